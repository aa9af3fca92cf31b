"""README tables for detection and segmentation, rendered from results/tasks.json (scripts/task_results.py)."""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent.parent.parent / "results" / "tasks.json"


def _agreement(parity: dict) -> str:
    if parity["task"] == "detection":
        return f"box recall {parity['box_recall']:.3f}, precision {parity['box_precision']:.3f}"
    return f"mask agreement {parity['mask_agreement']:.4f}"


def task_table(path: Path = RESULTS) -> str:
    """Markdown table: every artifact of every task reference model with its task metric, drop and latency."""
    if not path.exists():
        return "_not measured yet: run `python scripts/task_results.py`_"
    data = json.loads(path.read_text())
    lines = ["| model | task | data (n) | artifact | float | artifact's | drop (points) | vs float | SQNR dB | "
             "network ms | post-processing ms |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    commands, host = [], None
    for report in data["reports"]:
        host = report["host"]
        commands.append(report["command"])
        for row in report["artifacts"]:
            artifact = f"{row['backend']} {row['precision']}"
            if row["status"] != "ok":
                lines.append(f"| `{report['model']}` | {report['task']} | `{report['data']}` ({report['n']}) | "
                             f"{artifact} | {row['status']}: {row.get('detail', '')[:80]} | | | | | | |")
                continue
            p = row["parity"]
            metric = p["metric"]
            label = "mAP@[.5:.95] / @0.5" if metric == "map" else "mIoU"
            ours = (f"{p['float_map']:.3f} / {p['float_map50']:.3f}" if metric == "map" else f"{p['float_miou']:.3f}")
            theirs = (f"{p['quant_map']:.3f} / {p['quant_map50']:.3f}" if metric == "map" else f"{p['quant_miou']:.3f}")
            sqnr = ", ".join(f"{v:.1f}" for v in p["sqnr_db"].values())
            lines.append(f"| `{report['model']}` | {report['task']} ({label}) | `{report['data']}` ({report['n']}) | "
                         f"{artifact} | {ours} | {theirs} | {p['drop']:+.2f} | {_agreement(p)} | {sqnr} | "
                         f"{row['network_ms']:.2f} | {row['postprocess_ms']:.2f} |")
    if host:
        lines += ["", f"Host: {host['model']}, ISA: {', '.join(host['isa']) or 'no AVX2'}; medians of single-image "
                      "runs on a shared, busy machine (compare within a row set, not across machines).", "",
                  "Commands:", ""] + [f"    {c}" for c in commands]
    return "\n".join(lines)
