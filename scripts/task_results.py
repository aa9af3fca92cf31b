"""Measure the detection/segmentation reference models on every backend here into results/tasks.json.

    python scripts/task_results.py [MODEL ...]          every backend on this host (x86 target)
    python scripts/task_results.py --mcu [MODEL ...]    TFLite Micro int8 for the Cortex-M7 board

Each model runs `edgemb task-verify` (the same library call) with the data, calibration and artifacts below;
the README table (`make readme`) is rendered from the JSON.
"""

from __future__ import annotations

import json
import shlex
import sys
import tempfile
from pathlib import Path

from edgemb.artifacts import write_json
from edgemb.tasks.verify import verify_task
from edgemb.zoo.weights.catalog import reference_entries
from provenance import measured_on
from readme_tables import TASK_RESULTS

DATA = "synthdet:test"
CALIB = "synthdet:train:256"
ARTIFACTS = (("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("openvino", "fp32"), ("openvino", "int8"),
             ("tflite", "fp32"), ("tflite", "int8"), ("tvm", "fp32"))
# TFLite Micro runs reference kernels on the host (slow): fewer images, the Cortex-M7 board's fit check.
MCU = {"target": "cortex-m7", "data": "synthdet:test:64", "artifacts": (("tflm", "int8"),)}


def main(names: list[str]) -> None:
    """Run task-verify for each model and keep the other models' reports already in the file."""
    existing = json.loads(TASK_RESULTS.read_text())["reports"] if TASK_RESULTS.exists() else []
    mcu = "--mcu" in names
    names = [n for n in names if n != "--mcu"] or list(reference_entries("detection", "segmentation"))
    target, data, artifacts = (MCU["target"], MCU["data"], MCU["artifacts"]) if mcu else ("x86", DATA, ARTIFACTS)
    reports = [r for r in existing if r["model"].split("@")[0] not in names or r["target"] != target]
    for name in names:
        with tempfile.TemporaryDirectory() as scratch:
            report = verify_task(name, "ref", data, CALIB, Path(scratch) / name, artifacts, target)
        backends = " ".join(f"--backend {b}:{p}" for b, p in artifacts)
        report["measured_on"] = measured_on()
        report["command"] = (f"edgemb task-verify {shlex.quote(name)} --weights ref --data {data} "
                             f"--calib {CALIB} {backends} --target {target} --out build/tasks/{name}")
        reports.append(report)
        write_json(TASK_RESULTS, {"note": "written by scripts/task_results.py", "reports": reports})


if __name__ == "__main__":
    main(sys.argv[1:])
