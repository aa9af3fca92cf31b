"""Measure the detection/segmentation reference models on every backend here into results/tasks.json.

    python scripts/task_results.py [MODEL ...]          every backend on this host (x86 target)
    python scripts/task_results.py --mcu [MODEL ...]    TFLite Micro int8 for the Cortex-M7 board

Each model is deployed (`edgemb deploy`, the same library call; `edgemb task-verify` is deploy with these
data defaults) into build/tasks/TARGET/MODEL/ with the data, calibration and artifacts below. Each report keeps
what the README table shows from the deploy's report.json (`table_report`); `make readme` renders the table.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

from edgemb.artifacts import write_json
from edgemb.hostinfo import host_cpu
from edgemb.stages.deploy import DeploySettings, deploy
from edgemb.zoo.weights.catalog import reference_entries
from provenance import measured_on
from readme_tables import TASK_RESULTS

DATA = "synthdet:test"
CALIB = "synthdet:train:256"
BACKENDS = ("onnxruntime", "openvino", "tflite", "tvm:fp32")
OUT = Path("build/tasks")
# TFLite Micro runs reference kernels on the host (slow): fewer images, the Cortex-M7 board's fit check.
MCU = {"target": "cortex-m7", "data": "synthdet:test:64", "backends": ("tflm:int8",)}


def table_report(report: dict[str, Any], command: str) -> dict[str, Any]:
    """What the README task table shows of one deploy's report.json: per artifact its status, the task's parity
    (metric of float and artifact, drop in points, agreement with float, SQNR per raw output), the network's
    median latency on the device (None when nothing timed it) and the host post-processing time."""
    task = report["task"]
    rows = []
    for a in report["artifacts"]:
        row: dict[str, Any] = {k: a[k] for k in ("backend", "precision", "status", "detail") if k in a}
        if "memory" in a:
            row["memory"], row["fits"] = a["memory"], a["memory"].get("fits")
        if a.get("parity"):
            row["parity"] = {**a["parity"], "task": task["name"], "sqnr_db": a["parity"]["sqnr_db_outputs"]}
            row["network_ms"] = a["latency"]["p50_ms"] if "latency" in a else None
            row["postprocess_ms"] = task["postprocess_ms"]
            row["budget_status"] = a.get("budget_status")
        rows.append(row)
    evaluation = report["data"]["evaluation"]
    return {"model": report["model"], "task": task["name"], "data": evaluation["spec"], "n": evaluation["n"],
            "target": report["target"], "budget": report["budget"]["applied"], "recommended": report["recommended"],
            "host": host_cpu(), "measured_on": measured_on(), "command": command, "artifacts": rows}


def main(names: list[str]) -> None:
    """Deploy each model and keep the other models' reports already in the file."""
    existing = json.loads(TASK_RESULTS.read_text())["reports"] if TASK_RESULTS.exists() else []
    mcu = "--mcu" in names
    names = [n for n in names if n != "--mcu"] or list(reference_entries("detection", "segmentation"))
    target, data, backends = (MCU["target"], MCU["data"], MCU["backends"]) if mcu else ("x86", DATA, BACKENDS)
    reports = [r for r in existing if r["model"].split("@")[0] not in names or r["target"] != target]
    for name in names:
        settings = DeploySettings(name, target, weights="ref", calib=CALIB, eval=data, backend=",".join(backends))
        report = deploy(settings, OUT, log=lambda message: print(message, flush=True))
        command = (f"edgemb task-verify {shlex.quote(name)} --weights ref --data {data} --calib {CALIB} "
                   + " ".join(f"--backend {b}" for b in backends) + f" --target {target} --out {OUT}")
        reports.append(table_report(report, command))
        write_json(TASK_RESULTS, {"note": "written by scripts/task_results.py", "reports": reports})


if __name__ == "__main__":
    main(sys.argv[1:])
