"""The README's task tables come from deploy reports (scripts/task_results.py, `make task-table`): each row names
the `edgemb deploy` command that made it and the commit, CPU and ISA it was measured on. Fast: small hand-made
reports in the shape deploy writes (tests/test_task_deploy.py renders a real one)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import task_results
from readme_tables import task_table

STAMP = {"commit": "abc1234", "cpu": "Test CPU", "isa": ["avx2", "avx512_vnni"]}


def _artifact(backend: str, precision: str, drop: float | None, **extra: Any) -> dict[str, Any]:
    a: dict[str, Any] = {"backend": backend, "precision": precision, "status": "ok", **extra}
    if drop is not None:
        a["parity"] = {"metric": "map", "float_map": 0.512, "float_map50": 0.731, "quant_map": 0.512 - drop / 100,
                       "quant_map50": 0.725, "drop": drop, "box_recall": 0.95, "box_precision": 0.97,
                       "sqnr_db": 25.34, "sqnr_db_outputs": {"cls_logits": 31.26, "bbox_regression": 25.34},
                       "where": "this host", "n": 500}
        a["budget_status"] = "pass" if drop <= 0.5 else "fail"
        a["within_budget"] = drop <= 0.5
    return a


def _detector_report() -> dict[str, Any]:
    """An x86 deploy of a detector: two artifacts measured here, one that failed to build."""
    latency = {"p50_ms": 1.2345, "device": "local", "emulated": False, "samples_ms": [1.2, 1.3]}
    return {"model": "ssdlite_v2_0.35@96", "target": "x86", "passed": True,
            "task": {"name": "detection", "metric": "map", "metric_label": "mAP", "postprocess_ms": 3.456},
            "data": {"evaluation": {"spec": "synthdet:test", "n": 500, "labelled": True}},
            "budget": {"max_drop": 0.5, "applied": "mAP drop <= 0.5 points"},
            "recommended": {"backend": "onnxruntime", "precision": "int8", "reason": "fastest within budget"},
            "quantization": {"eval": {}, "layer_sqnr": {"layers": [1, 2, 3]}}, "folder": "build/tasks/x86/m",
            "artifacts": [_artifact("onnxruntime", "fp32", 0.0, latency={**latency, "p50_ms": 2.5}),
                          _artifact("onnxruntime", "int8", 0.4, latency=latency),
                          {"backend": "tvm", "precision": "int8", "status": "failed", "within_budget": False,
                           "detail": "TVM could not lower the box head"}]}


def _mcu_report() -> dict[str, Any]:
    """A Cortex-M7 deploy whose only artifact misses the budget: nothing recommended, memory instead of latency."""
    tflm = _artifact("tflm", "int8", 1.2, memory={"flash_bytes": 1291832, "arena_bytes": 357376, "fits": True})
    return {**_detector_report(), "target": "cortex-m7", "passed": False, "recommended": None, "artifacts": [tflm],
            "data": {"evaluation": {"spec": "synthdet:test:64", "n": 64, "labelled": True}}}


def _write(path: Path, reports: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"reports": reports}))
    return path


def test_each_deploy_row_names_its_command_and_where_it_was_measured(tmp_path):
    reports = [task_results.slim(_detector_report(), "edgemb deploy ssdlite_v2_0.35 --target x86 --out build/tasks",
                                 STAMP),
               task_results.slim(_mcu_report(), "edgemb deploy ssdlite_v2_0.35 --target cortex-m7 --out build/tasks "
                                 "--eval synthdet:test:64", STAMP)]
    table = task_table(_write(tmp_path / "tasks.json", reports))
    lines = table.splitlines()
    summary = [line for line in lines if line.startswith("| `edgemb deploy")]
    assert len(summary) == 2 and all("| `abc1234`, Test CPU (avx512_vnni) |" in line for line in summary)
    x86, mcu = summary
    assert ("| detection (mAP@[.5:.95] / @0.5) | `synthdet:test` (500) | mAP drop <= 0.5 points | onnxruntime int8 "
            "| 0.512 / 0.731 -> 0.508 / 0.725 | +0.40 | box recall 0.950, precision 0.970 | 1.234 (local) | 3.46 |"
            in x86)
    assert x86.endswith("| 2 of 3 | passed | `abc1234`, Test CPU (avx512_vnni) |")
    assert "--eval synthdet:test:64` |" in mcu and "| none |" in mcu and "| 0 of 1 | FAILED |" in mcu
    # every artifact: scores, drop, agreement with float, SQNR of each raw output, latency, budget
    int8 = next(line for line in lines if line.startswith("| `ssdlite_v2_0.35@96` | x86 | onnxruntime int8 |"))
    assert int8.endswith("| +0.40 | box recall 0.950, precision 0.970 | cls_logits 31.3, bbox_regression 25.3 | "
                         "1.234 (local) | pass |")
    assert "| tvm int8 | failed: TVM could not lower the box head |" in table
    tflm = next(line for line in lines if "| cortex-m7 | tflm int8" in line)
    assert "flash 1.29 MB, arena 349 KiB, fits" in tflm and tflm.endswith("| +1.20 | box recall 0.950, precision "
                                                                             "0.970 | cls_logits 31.3, bbox_regression "
                                                                             "25.3 | - | fail |")


def test_the_script_records_the_command_it_ran_and_replaces_only_those_deploys(tmp_path, monkeypatch):
    ran: list[list[str]] = []

    def fake_run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
        ran.append(argv)
        model, target = argv[argv.index("deploy") + 1], argv[argv.index("--target") + 1]
        folder = cwd / "build" / "tasks" / target / model
        folder.mkdir(parents=True)
        report = {**_detector_report(), "target": target, "model": f"{model}@96"}
        (folder / "report.json").write_text(json.dumps(report))
        return subprocess.CompletedProcess(argv, 1)  # 1: no artifact met the budget, still a report

    results = tmp_path / "tasks.json"
    kept = {**_mcu_report(), "model": "lraspp_v3l_0.5@128", "command": "edgemb deploy lraspp_v3l_0.5 ..."}
    replaced = {**_detector_report(), "command": "old"}
    _write(results, [kept, replaced])
    monkeypatch.setattr(task_results, "ROOT", tmp_path)
    monkeypatch.setattr(task_results, "TASK_RESULTS", results)
    monkeypatch.setattr(task_results, "measured_on", lambda: STAMP)
    monkeypatch.setattr(task_results.subprocess, "run", fake_run)
    task_results.main(["x86:ssdlite_v2_0.35"])
    assert ran == [[sys.executable, "-m", "edgemb", "deploy", "ssdlite_v2_0.35", "--target", "x86", "--out",
                    "build/tasks"]]
    reports = json.loads(results.read_text())["reports"]
    assert [r["command"] for r in reports] == ["edgemb deploy ssdlite_v2_0.35 --target x86 --out build/tasks",
                                               kept["command"]]
    assert reports[0]["measured_on"] == STAMP and "samples_ms" not in reports[0]["artifacts"][1]["latency"]
    assert task_results.deploy_args("cortex-m7", "m")[-2:] == ["--eval", "synthdet:test:64"]
    with pytest.raises(SystemExit, match="TARGET:MODEL"):
        task_results.main(["ssdlite_v2_0.35"])


def test_the_default_deploys_are_every_shipped_task_model_on_x86_and_the_microcontroller():
    from edgemb.zoo.weights.catalog import reference_entries

    shipped = list(reference_entries("detection", "segmentation"))
    assert task_results.default_deploys() == [(t, m) for t in ("x86", "cortex-m7") for m in shipped]
