"""Every task through the one deploy: a task object for each zoo entry, and small detector and segmenter deploys
(onnxruntime only, synthdet data) whose report carries the task, its metric, the drop in its points and a
recommendation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgemb.budget import FAIL, PASS, Budget
from edgemb.metrics import parity
from edgemb.stages.deploy import DeploySettings, deploy
from edgemb.tasks import ClassificationTask, SegmentationTask, task_for
from edgemb.zoo import parse_model_name

SMALL = {"calib": "synthdet:train:64", "eval": "synthdet:test:32", "runs": 3, "backend": "onnxruntime"}
DETECTOR, SEGMENTER = "ssdlite_v2_0.35@96", "lraspp_v3l_0.5@128"  # the shipped task reference models, small


def test_every_zoo_entry_has_a_task_and_classification_parity_is_the_metrics_one():
    task = task_for(parse_model_name("v1_0.25"), 10)
    assert isinstance(task, ClassificationTask) and task.output_names == ("logits",) and task.metric == "top1"
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((50, 10)).astype(np.float32)
    noisy = logits + 0.5 * rng.standard_normal(logits.shape).astype(np.float32)
    labels = rng.integers(0, 10, 50)
    assert task.parity([logits], [noisy], labels) == parity(logits, noisy, labels)
    assert task.parity([logits], [noisy]) == parity(logits, noisy, None)
    assert task.score(task.postprocess([logits]), labels)["top1"] == float(np.mean(logits.argmax(1) == labels))
    assert task_for(parse_model_name(DETECTOR)).metric == "map"
    assert task_for(parse_model_name(SEGMENTER)).metric == "miou"


def test_segmentation_parity_without_truth_is_points_lost_to_float_and_a_budget_judges_it():
    task = SegmentationTask(8, 3)
    logits = np.zeros((4, 3, 8, 8), np.float32)
    logits[:, 1, :, :4] = 1.0  # left half class 1, right half background
    same = task.parity([logits], [logits.copy()])
    assert same["est_drop"] == same["est_drop_high"] == 0.0 and same["agreement"] == 1.0
    assert "no labels" in same["est_basis"] and Budget(max_drop=0.5).judge(same)[0] == PASS
    flipped = logits.copy()
    flipped[:, 2, :2, :2] = 5.0  # a corner becomes class 2
    worse = task.parity([logits], [flipped])
    assert worse["est_drop"] > 0.5 and worse["mask_agreement"] < 1.0
    assert Budget(max_drop=0.5).judge(worse)[0] == FAIL
    assert isinstance(worse["sqnr_db"], float) and set(worse["sqnr_db_outputs"]) == {"seg_logits"}


@pytest.fixture(scope="module", params=[(DETECTOR, "detection", "map", "mAP"),
                                        (SEGMENTER, "segmentation", "miou", "mIoU")], ids=["detector", "segmenter"])
def task_deploy(request, tmp_path_factory):
    model, name, metric, label = request.param
    out = tmp_path_factory.mktemp("task-deploy")
    report = deploy(DeploySettings(model, "x86", max_drop=5.0, **SMALL), out, log=lambda _: None)
    return out / "x86" / model, report, name, metric, label


def test_task_deploy_reports_task_metric_drop_in_points_and_a_recommendation(task_deploy):
    folder, report, name, metric, label = task_deploy
    assert json.loads((folder / "report.json").read_text())["artifacts"] == report["artifacts"]
    assert report["task"]["name"] == name and report["task"]["metric"] == metric
    assert report["data"]["evaluation"]["labelled"] is True and report["data"]["evaluation"]["n"] == 32
    assert report["budget"]["applied"] == f"{label} drop <= 5 points"
    assert {(a["backend"], a["precision"]) for a in report["artifacts"]} == {("onnxruntime", "fp32"),
                                                                              ("onnxruntime", "int8")}
    for a in report["artifacts"]:
        p = a["parity"]
        assert a["status"] == "ok" and p["where"] == "this host" and p["n"] == 32 and p["metric"] == metric
        assert p["drop"] == pytest.approx(100 * (p[f"float_{metric}"] - p[f"quant_{metric}"]), abs=0.02)
        assert 0.0 <= p["agreement"] <= 1.0 and isinstance(p["sqnr_db"], float)
        assert a["device_parity"]["metric"] == metric and a["latency"]["runs"] == 3
        assert a["budget_status"] == (PASS if p["drop"] <= 5.0 else FAIL)
    fp32 = next(a for a in report["artifacts"] if a["precision"] == "fp32")
    assert fp32["parity"]["drop"] == 0.0 and fp32["parity"]["sqnr_db"] > 60
    assert report["quantization"]["eval"]["metric"] == metric
    rec = report["recommended"]
    assert report["passed"] and rec["backend"] == "onnxruntime" and f"{label} drop <= 5 points" in rec["reason"]
    page = (folder / "report.html").read_text()
    assert f"<th>{label} drop (pts)</th>" in page and f"<th>float {label}</th>" in page and "id=task" in page
    # the host post-processing (decode, NMS, argmax) is timed apart: no artifact's latency includes it
    assert report["task"]["postprocess_ms"] > 0 and f"host post-processing {report['task']['postprocess_ms']:.2f} ms" \
        in page
    assert report["pictures"] == "pictures.html" and "href='pictures.html'" in page
    pictures = (folder / "pictures.html").read_text()
    assert pictures.count("data:image/png") == 4 * 3  # four images: truth, float, int8
    assert "<th>truth</th>" in pictures and "int8" in pictures


def test_backend_selection_takes_names_and_name_precision_pairs():
    from edgemb.errors import EdgembError
    from edgemb.stages.compile import plan
    from edgemb.targets import get_target

    x86 = get_target("x86")
    assert plan(x86, "onnxruntime") == [("onnxruntime", "fp32"), ("onnxruntime", "int8")]  # make deploy BACKEND=
    assert plan(x86, "onnxruntime:int8,openvino") == [("onnxruntime", "int8"), ("openvino", "fp32"),
                                                      ("openvino", "int8")]
    assert plan(x86, "tvm:fp32,onnxruntime:fp32") == [("tvm", "fp32"), ("onnxruntime", "fp32")]
    assert len(plan(x86, None)) == 8
    with pytest.raises(EdgembError, match="cannot build onnxruntime fp16 for x86"):
        plan(x86, "onnxruntime:fp16")
    with pytest.raises(EdgembError, match="does not support backend 'tflm'"):
        plan(x86, "tflm:int8")


def test_task_table_renders_a_deploy_report(task_deploy):
    # scripts/task_results.py keeps a deploy's report.json (without raw samples) for the README task tables
    from readme_tables import task_table
    from task_results import slim

    folder, report, name, _, _ = task_deploy
    stamp = {"commit": "abc1234", "cpu": "Test CPU", "isa": ["avx2"]}
    kept = slim(json.loads((folder / "report.json").read_text()), "edgemb deploy MODEL --target x86", stamp)
    assert kept["measured_on"] == stamp and kept["task"]["name"] == name
    assert all("samples_ms" not in a.get("latency", {}) for a in kept["artifacts"])
    assert "layer_sqnr" not in kept["quantization"] and "folder" not in kept
    path = folder / "tasks.json"
    path.write_text(json.dumps({"reports": [kept]}))
    table = task_table(path)
    deployed = next(a for a in report["artifacts"] if a["precision"] == "int8")
    detail = f"| `{report['model']}` | x86 | onnxruntime int8 |"  # the summary row may show the same artifact
    row = next(line for line in table.splitlines() if line.startswith(detail))
    assert f"{deployed['parity']['drop'] + 0.0:+.2f}" in row and f"{deployed['latency']['p50_ms']:.3f} (local)" in row
    assert all(f"{k} {v:.1f}" in row for k, v in deployed["parity"]["sqnr_db_outputs"].items())
    assert table.count("| `edgemb deploy MODEL --target x86` |") == 1 and "`abc1234`, Test CPU (avx2)" in table
