"""`make task-table`: deploy the detection/segmentation reference models with the main command and keep the
reports for the README's task tables (results/tasks.json).

    python scripts/task_results.py [TARGET:MODEL ...]   (default: every shipped detector and segmenter on x86,
                                                        then with TFLite Micro on the Cortex-M7 board; named
                                                        deploys replace theirs and keep the rest)

Each deploy runs `edgemb deploy MODEL --target TARGET --out build/tasks` (plus TARGET_ARGS) as a subprocess, so
the command a row shows is the one that made it; everything else is the deploy's own default: the reference
weights, their synthdet calibration and test data, every backend and precision the target supports, the default
budget in mAP/mIoU points. The report.json it writes is kept whole except its raw latency samples and per-layer
table, with that command and `measured_on` (commit, CPU, ISA: scripts/provenance.py).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from edgemb.artifacts import write_json
from edgemb.zoo.weights.catalog import reference_entries
from provenance import measured_on
from readme_tables import TASK_RESULTS

ROOT = Path(__file__).resolve().parents[1]
OUT = Path("build/tasks")  # relative to the repository: the recorded command works from a checkout
TARGETS = ("x86", "cortex-m7")
# TFLite Micro runs its reference kernels on this host, slowly: the microcontroller deploy sees 64 test images.
TARGET_ARGS = {"cortex-m7": ("--eval", "synthdet:test:64")}


def default_deploys() -> list[tuple[str, str]]:
    """(target, model) of every shipped detector and segmenter on every board of the table."""
    return [(target, name) for target in TARGETS for name in reference_entries("detection", "segmentation")]


def deploy_args(target: str, model: str) -> list[str]:
    """The `edgemb` arguments of one deploy."""
    return ["deploy", model, "--target", target, "--out", str(OUT), *TARGET_ARGS.get(target, ())]


def run_deploy(target: str, model: str) -> tuple[dict[str, Any], str]:
    """Run one deploy through the CLI; its report.json and the command that wrote it."""
    args = deploy_args(target, model)
    command = shlex.join(["edgemb", *args])
    print(f"$ {command}", flush=True)
    started = time.time()
    code = subprocess.run([sys.executable, "-m", "edgemb", *args], cwd=ROOT).returncode
    path = ROOT / OUT / target / model / "report.json"
    # exit 1 only says no artifact met the budget: the report is still the result
    if code not in (0, 1) or not path.exists() or path.stat().st_mtime < started:
        raise SystemExit(f"`{command}` exited {code} without writing {path}")
    return json.loads(path.read_text()), command


def slim(report: dict[str, Any], command: str, stamp: dict[str, Any]) -> dict[str, Any]:
    """A deploy's report.json without its raw latency samples and per-layer SQNR table (both stay in build/),
    with the command that made it and where and when it was measured."""
    artifacts = []
    for a in report["artifacts"]:
        a = dict(a)
        if "latency" in a:
            a["latency"] = {k: v for k, v in a["latency"].items() if k != "samples_ms"}
        artifacts.append(a)
    quantization = {k: v for k, v in (report.get("quantization") or {}).items() if k != "layer_sqnr"}
    kept = {k: v for k, v in report.items() if k not in ("artifacts", "quantization", "folder")}
    return {"command": command, **kept, "quantization": quantization, "artifacts": artifacts, "measured_on": stamp}


def merge(earlier: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The new reports, then the earlier ones of other (target, model) pairs."""
    redone = {(r["target"], r["model"]) for r in new}
    return new + [r for r in earlier if (r["target"], r["model"]) not in redone]


def main(items: list[str]) -> None:
    """Deploy each item and rewrite results/tasks.json after each one (an interrupted run keeps what it made)."""
    if any(":" not in item for item in items):
        raise SystemExit("name deploys as TARGET:MODEL, e.g. x86:ssdlite_v2_0.35 (none: every default deploy)")
    deploys = [tuple(item.split(":", 1)) for item in items] or default_deploys()
    earlier = json.loads(TASK_RESULTS.read_text())["reports"] if TASK_RESULTS.exists() else []
    stamp = measured_on()
    done: list[dict[str, Any]] = []
    for target, model in deploys:
        report, command = run_deploy(target, model)
        done.append(slim(report, command, stamp))
        write_json(TASK_RESULTS, {"note": "written by scripts/task_results.py (make task-table)",
                                  "reports": merge(earlier, done)})


if __name__ == "__main__":
    main(sys.argv[1:])
