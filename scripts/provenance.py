"""Where and when a measured number was made: the commit, and this host's CPU and ISA flags.

Every script that writes results/*.json stamps each row with `measured_on()`, so a table can always say what
it was measured on (the CPU and ISA come from edgemb.hostinfo, the one /proc/cpuinfo parse).
tests/test_results.py fails on a row without it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from edgemb.hostinfo import read_cpuinfo

ROOT = Path(__file__).resolve().parent.parent
# Rows measured before rows recorded this; kept so (not guessed) until their table is regenerated.
NOT_RECORDED = "unknown (measured before provenance was recorded)"


# What the table runs themselves write (results/*.json, the README tables, BENCHMARKS.md): outputs, not what the
# numbers were measured with. A multi-table run (`make results`) changes them as it goes, so they must not make
# its later rows `+dirty`.
WRITTEN_BY_RUNS = ("results", "README.md", "BENCHMARKS.md")


def commit(root: Path = ROOT) -> str:
    """The commit the numbers were measured at (`+dirty` when tracked files other than WRITTEN_BY_RUNS changed)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown (not a git checkout)"
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", *(f":!{p}" for p in WRITTEN_BY_RUNS))
    return head + ("+dirty" if changed else "")


def measured_on() -> dict[str, Any]:
    """{"commit", "cpu", "isa"} of this run, for every row a results script writes."""
    cpu = read_cpuinfo()
    return {"commit": commit(), "cpu": cpu.model, "isa": list(cpu.isa)}


def stamp_rows(rows: list[dict[str, Any]], stamp: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Rows with this run's `measured_on` added; a row kept from an earlier run keeps its own."""
    stamp = stamp or measured_on()
    return [{"measured_on": stamp, **row} for row in rows]
