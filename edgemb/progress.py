"""Progress bars on a terminal, silence in CI logs."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def show_progress() -> bool:
    """True when stderr is a terminal and we are not in CI (EDGEMB_PROGRESS=0/1 forces it)."""
    forced = os.environ.get("EDGEMB_PROGRESS")
    if forced is not None:
        return forced == "1"
    return sys.stderr.isatty() and not os.environ.get("CI")


def progress(iterable: Iterable[T] | None = None, **kwargs: Any) -> tqdm:
    """A tqdm bar that disables itself where nobody is watching."""
    return tqdm(iterable, disable=not show_progress(), file=sys.stderr, dynamic_ncols=True, **kwargs)


class StepTimes:
    """Wall seconds per named step of a long command, so a report can say where its time went."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def mark(self, step: str) -> None:
        """Charge the time since the previous mark to `step` (added up when a step repeats)."""
        now = time.perf_counter()
        self.seconds[step] = round(self.seconds.get(step, 0.0) + now - self._last, 2)
        self._last = now
