"""The data spec grammar shared by every reader: `KIND:LOCATION[:N]`, and the seeded subset that `:N` picks.

See edgemb.data.datasets for the kinds and calibration/README.md for the user's view.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from edgemb.errors import EdgembError

KINDS = ("fashion-mnist", "imagefolder", "npy", "npz", "photos", "synthdet")
DEFAULT_SEED = 0


@dataclass
class DataSpec:
    """A parsed data spec: what to read, where, and how many samples."""

    kind: str
    location: str
    count: int | None
    text: str


def parse_spec(text: str) -> DataSpec:
    """Split `KIND:LOCATION[:N]` and check each part, with a usage hint on error."""
    kind, sep, rest = text.partition(":")
    if not sep or kind not in KINDS or not rest:
        raise EdgembError(
            f"data spec {text!r} is not KIND:LOCATION[:N] with KIND one of {', '.join(KINDS)}; "
            "e.g. fashion-mnist:test, fashion-mnist:train:512, photos:eval, imagefolder:DIR:100, npy:x.npy+y.npy"
        )
    count = None
    match = re.fullmatch(r"(?P<loc>.+?):(?P<n>-?\d+)", rest)
    if match:
        rest, count = match["loc"], int(match["n"])
        if count < 1:
            raise EdgembError(f"sample count in {text!r} must be >= 1, got {count}")
    return DataSpec(kind, rest, count, text)


def choose(total: int, count: int | None, spec: DataSpec, seed: int = DEFAULT_SEED) -> np.ndarray:
    """Indices of a seeded random subset (all when count is None), kept in dataset order."""
    if count is None:
        return np.arange(total)
    if count > total:
        raise EdgembError(f"{spec.text} asks for {count} samples but only {total} are available")
    return np.sort(np.random.default_rng(seed).choice(total, size=count, replace=False))
