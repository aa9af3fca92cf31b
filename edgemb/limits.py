"""The range each numeric setting may take, checked once before any work starts.

The command line checks its parsed options here (edgemb.cli) and a deploy checks its settings here
(edgemb.stages.deploy_guard), so a number means the same whether it came from a flag or from a library call.
Each number is checked once: `edgemb deploy`'s options are all deploy settings, so the command line leaves
them to the deploy's own check.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from edgemb.errors import EdgembError

# Inclusive ranges by option name (the flag is --NAME with dashes).
LIMITS: dict[str, tuple[float, float]] = {
    "runs": (1, 100_000), "warmup": (0, 10_000), "device_samples": (1, 100_000), "tune_trials": (0, 1_000_000),
    "batch_size": (1, 100_000), "samples": (1, 100_000), "layer_samples": (1, 100_000), "threads": (0, 1024),
    "max_float_layers": (0, 10_000), "port": (1, 65_535), "max_drop": (0, 100), "min_agreement": (0, 1),
    "min_sqnr": (-200, 200), "tune_seconds": (0, 604_800),
}


def out_of_range(values: Mapping[str, Any]) -> str | None:
    """The first setting outside its range (NaN, inf and non-numbers included) as a one-line message, else None."""
    for name, (low, high) in LIMITS.items():
        value = values.get(name)
        if value is None:
            continue
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not (number and math.isfinite(value) and low <= value <= high):
            return f"--{name.replace('_', '-')} must be between {low:g} and {high:g}, got {value}"
    return None


def check_limits(values: Mapping[str, Any]) -> None:
    """Raise EdgembError naming the first setting outside its range."""
    problem = out_of_range(values)
    if problem:
        raise EdgembError(problem)
