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
    lines = ["| model | task | data (n) | artifact | float | artifact's | drop (mAP@[.5:.95] or mIoU points) | "
             "vs float | SQNR dB | network ms | post-processing ms |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    commands, host = [], None
    for report in data["reports"]:
        host = report["host"]
        commands.append(report["command"])
        for row in report["artifacts"]:
            artifact = f"{row['backend']} {row['precision']}" + (
                f" ({report['target']})" if report.get("target", "x86") != "x86" else "")
            if "memory" in row:  # a microcontroller artifact: what it needs against what the board has
                mem = row["memory"]
                artifact += (f", flash {mem['flash_bytes'] / 1e6:.2f} MB, arena {mem['arena_bytes'] / 1024:.0f} KiB, "
                             f"{'fits' if row.get('fits') else 'does not fit'}")
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
                         f"{artifact} | {ours} | {theirs} | {p['drop'] + 0.0:+.2f} | {_agreement(p)} | {sqnr} | "
                         f"{row['network_ms']:.2f} | {row['postprocess_ms']:.2f} |")
    if host:
        lines += ["", f"Host: {host['model']}, ISA: {', '.join(host['isa']) or 'no AVX2'}; medians of single-image "
                      "runs on a shared, busy machine (compare within a row set, not across machines).", "",
                  "Commands:", ""] + [f"    {c}" for c in commands]
    return "\n".join(lines)


def task_reference_table() -> str:
    """Markdown table of the shipped detection/segmentation reference models with their measured quality."""
    from edgemb.zoo.weights import task_reference_entries

    entries = task_reference_entries()
    if not entries:
        return "_none shipped yet: run `python scripts/train_task_models.py`_"
    lines = ["| model | task | resolution | classes | quality (data, n) | epochs | train time | size | sha256 |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, entry in entries.items():
        m = entry["metrics"]
        quality = (f"mAP@[.5:.95] {m['map']:.3f}, mAP@0.5 {m['map50']:.3f}" if entry["task"] == "detection"
                   else f"mIoU {m['miou']:.3f}, pixel accuracy {m['pixel_accuracy']:.3f}")
        lines.append(f"| `{name}` | {entry['task']} | {entry['preprocessing']['resolution']} | "
                     f"{entry['num_classes']} | {quality} (`{m['data']}`, {m['n']}) | {entry['recipe']['epochs']} | "
                     f"{entry['train_seconds'] / 60:.0f} min | {entry['size_bytes'] / 1e6:.2f} MB | "
                     f"`{entry['sha256'][:12]}` |")
    return "\n".join(lines)
