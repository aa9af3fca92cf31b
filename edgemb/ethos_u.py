"""Which zoo entries fit an Ethos-U board: Vela's estimates from results/ethos_u.json (scripts/ethos_u_table.py).

Read by `edgemb models --fit TARGET` (the README table is rendered by scripts/readme_tables.py); no torch or Vela
import, so listing stays instant.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgemb.errors import EdgembError
from edgemb.targets import get_target

RESULTS = Path(__file__).resolve().parent.parent / "results" / "ethos_u.json"


def load_results(path: Path = RESULTS) -> dict[str, Any]:
    """The results file, or an error saying how to make it."""
    if not path.is_file():
        raise EdgembError(f"{path} does not exist: run `make ethos-u-table` (scripts/ethos_u_table.py) in an edgemb "
                          "checkout to compile the zoo's small models for every Ethos-U board")
    return json.loads(path.read_text())


def fit_rows(target_name: str, path: Path = RESULTS) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The board's results file rows (zoo models only), smallest estimate first; an error for non-Ethos-U boards."""
    target = get_target(target_name)
    if "vela" not in target.backends:
        boards = sorted(load_results(path)["boards"]) if path.is_file() else []
        raise EdgembError(f"--fit needs an Ethos-U board (one whose backends include vela), not {target.name}"
                          + (f": {', '.join(boards)}" if boards else ""))
    data = load_results(path)
    rows = [r for r in data["rows"] if r["target"] == target.name and r.get("role", "zoo") == "zoo"]
    if not rows:
        raise EdgembError(f"{path} has no rows for {target.name}: run `python scripts/ethos_u_table.py` again "
                          "(it compiles for every board file with the vela backend)")
    rows.sort(key=lambda r: (r["model"].split("@")[0], r["resolution"]))
    return data, rows


def fit_cell(row: dict[str, Any]) -> str:
    """`fits`, or `does not fit (sram needs ... > ...)`, or the failure."""
    if row["status"] == "failed":
        return "failed: " + row.get("detail", "")[:80]
    if row.get("fits"):
        return "fits"
    return "does not fit (" + row.get("detail", "").split(": ", 1)[-1] + ")"


def kib(value: int | None) -> str:
    """Bytes as KiB for tables."""
    return "-" if value is None else f"{value / 1024:,.0f}"


def fit_lines(target_name: str, path: Path = RESULTS) -> list[str]:
    """`edgemb models --fit TARGET`: one line per measured zoo entry with Vela's estimate and the fit."""
    data, rows = fit_rows(target_name, path)
    first = rows[0]
    lines = [f"{first['board']}: estimated (Vela performance model), from {path.name} (ethos-u-vela {data['vela']}, "
             f"commit {first['measured_on']['commit']}); 1000-class heads",
             f"{'model':<16} {'res':>4} {'MACs':>8} {'est. ms':>8} {'arena KiB':>10} {'NPU cache':>10} "
             f"{'model KiB':>10} {'NPU ops':>8}  fit"]
    for r in rows:
        est = r.get("estimate", {})
        memory = r.get("memory", {})
        split = r.get("npu_split", {})
        ops = f"{split['npu']}/{split['total']}" if split else "-"
        ms = f"{est['inference_ms']:.2f}" if est else "-"
        lines.append(f"{r['model']:<16} {r['resolution']:>4} {r['macs'] / 1e6:>7.1f}M {ms:>8} "
                     f"{kib(memory.get('arena_bytes')):>10} {kib(memory.get('npu_cache_bytes') or None):>10} "
                     f"{kib(memory.get('flash_bytes')):>10} {ops:>8}  {fit_cell(r)}")
    return lines
