"""The shipped detection/segmentation reference models: recorded quality, export parity, `task-verify` (deploy)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from edgemb.artifacts import sha256_file
from edgemb.data import load_data
from edgemb.stages.export import onnx_parity
from edgemb.training.synthdet import TASK_RECIPES
from edgemb.zoo.prepared import prepare_model
from edgemb.zoo.weights.catalog import REFERENCE_DIR, reference_entries

METRIC = {"detection": "map50", "segmentation": "miou"}


@pytest.mark.parametrize("name", sorted(reference_entries("detection", "segmentation")))
def test_shipped_task_model_matches_its_manifest_and_recipe(name):
    entry = reference_entries("detection", "segmentation")[name]
    assert sha256_file(REFERENCE_DIR / entry["file"]) == entry["sha256"]
    assert name in TASK_RECIPES and entry["recipe"]["model"] == TASK_RECIPES[name].model
    prepared = prepare_model(name, "ref")
    assert prepared.spec.resolution == entry["preprocessing"]["resolution"]
    assert prepared.num_classes == entry["num_classes"] == 6


@pytest.mark.parametrize("name", sorted(reference_entries("detection", "segmentation")))
def test_export_parity_on_raw_outputs_of_the_trained_model(tmp_path, name):
    from edgemb.stages.export import export_simplified

    prepared = prepare_model(name, "ref")
    x = load_data("synthdet:test:8", prepared.preprocessing).x
    path = export_simplified(prepared.model, prepared.spec.resolution, tmp_path / "m.onnx")
    parity = onnx_parity(prepared.model, path, prepared.spec.resolution, inputs=x)
    assert parity["passed"] and parity["max_abs_diff"] <= 1e-4
    assert set(parity["max_abs_diff_per_output"]) == set(prepared.model.output_names)


def smallest_of_each_task() -> list[str]:
    """The fastest shipped model of each task (fewest pixels, then the smallest file): the whole chain once per
    task. A bigger reference model adds CI minutes (ssdlite_v2_1.0@192: 156 s on a Zen 3 core pair), not
    coverage of the chain; its file and export are checked above for every model."""
    entries = reference_entries("detection", "segmentation")
    by_task: dict[str, list[str]] = {}
    for name, entry in entries.items():
        by_task.setdefault(entry["task"], []).append(name)
    return sorted(min(names, key=lambda n: (entries[n]["preprocessing"]["resolution"], (REFERENCE_DIR / entries[n][
        "file"]).stat().st_size)) for names in by_task.values())


@pytest.mark.slow
@pytest.mark.parametrize("name", smallest_of_each_task())
def test_task_verify_cli_deploys_and_reports_metrics_drop_and_pictures(tmp_path, name):
    # `edgemb task-verify` is deploy with a task's data defaults: the same pipeline, report.json and pictures.html
    entry = reference_entries("detection", "segmentation")[name]
    result = subprocess.run(
        [sys.executable, "-m", "edgemb", "task-verify", name, "--weights", "ref", "--data", "synthdet:test:48",
         "--calib", "synthdet:train:64", "--backend", "onnxruntime:fp32", "--backend", "onnxruntime:int8",
         "--out", str(tmp_path)], capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr
    assert "recommended: onnxruntime" in result.stdout
    folder = tmp_path / "x86" / name
    report = json.loads((folder / "report.json").read_text())
    assert report["task"]["name"] == entry["task"] and report["data"]["evaluation"]["n"] == 48
    fp32, int8 = report["artifacts"]
    assert (fp32["backend"], fp32["precision"], int8["backend"], int8["precision"]) == ("onnxruntime", "fp32",
                                                                                        "onnxruntime", "int8")
    metric = METRIC[entry["task"]]
    # the trained model's quality comes back through the whole chain (48 images: within half of the 500-image score)
    assert fp32["parity"]["drop"] == 0.0 and fp32["parity"][f"float_{metric}"] >= 0.5 * entry["metrics"][metric]
    assert int8["status"] == "ok" and np.isfinite(int8["parity"]["drop"])
    # int8 keeps the trained quality on the same images (recorded drops on 500 images are under one point)
    assert int8["parity"][f"quant_{metric}"] >= 0.8 * int8["parity"][f"float_{metric}"] > 0
    sqnr = int8["parity"]["sqnr_db_outputs"]
    assert min(sqnr.values()) > 10  # int8, not garbage, and not float (which is > 100 dB)
    assert max(sqnr.values()) < 100
    assert report["task"]["postprocess_ms"] > 0 and "latency" in int8  # network and post-processing timed apart
    page = (folder / "pictures.html").read_text()
    assert page.count("<img") == 4 * 3  # 4 images x (truth, float, int8)


TRAIN_ONCE = """
import json, sys
from pathlib import Path
from edgemb.training.synthdet import TaskRecipe, train_task_reference
recipe = TaskRecipe("ssdlite_v2_0.35@64", epochs=1, init="v2_0.35", batch_size=8, train_data="synthdet:train:16",
                    eval_data="synthdet:test:8")
print(json.dumps(train_task_reference(recipe, Path(sys.argv[1]), log=False)))
"""


def test_task_training_is_reproducible(tmp_path):
    # fresh processes, one thread (the recipes' setting): the same recipe gives the same bytes
    digests = []
    for folder in ("a", "b"):
        result = subprocess.run([sys.executable, "-c", TRAIN_ONCE, str(tmp_path / folder)], capture_output=True,
                                text=True, timeout=600)
        assert result.returncode == 0, result.stderr
        digests.append(json.loads(result.stdout.strip().splitlines()[-1])["sha256"])
    assert digests[0] == digests[1]
