"""The shipped reference models: present, intact, trained (>= 90% top-1) and reproducible from their recipe."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edgemb.artifacts import sha256_file
from edgemb.data import Preprocessing
from edgemb.errors import EdgembError
from edgemb.training.classification import FASHION_MNIST_PREPROCESSING, REFERENCE_RECIPES
from edgemb.zoo.prepared import prepare_model
from edgemb.zoo.weights.catalog import REFERENCE_DIR, reference_entries

REQUIRED = ["v1_0.25", "v1_1.0", "v2_0.35", "v2_1.0", "v3s_1.0", "v3l_1.0"]


def test_every_required_family_has_a_recipe_and_a_shipped_checkpoint():
    entries = reference_entries()
    assert set(REQUIRED) <= set(REFERENCE_RECIPES) and set(REQUIRED) <= set(entries)
    total = 0
    for name in REQUIRED:
        entry = entries[name]
        path = REFERENCE_DIR / entry["file"]
        assert sha256_file(path) == entry["sha256"], f"{path} changed since it was measured"
        assert entry["task"] == "classification"
        assert entry["metrics"]["n"] == 10_000 and entry["metrics"]["top1"] >= 0.90
        total += path.stat().st_size
    assert total <= 25e6


def test_ref_weights_carry_their_resolution_and_preprocessing():
    prepared = prepare_model("v2_1.0", "ref")
    assert prepared.spec.resolution == 64 and prepared.num_classes == 10
    assert prepared.preprocessing == FASHION_MNIST_PREPROCESSING
    override = prepare_model("v2_1.0@96", "ref")
    assert override.spec.resolution == 96 and override.preprocessing.resolution == 96
    assert override.preprocessing.color == "gray3"


def test_missing_reference_is_a_clear_error():
    with pytest.raises(EdgembError, match=r"no reference checkpoint for v2_1\.4"):
        prepare_model("v2_1.4", "ref")


TRAIN_ONCE = """
import json, sys
from pathlib import Path
from edgemb.training.classification import Recipe, train_reference
recipe = Recipe("v1_0.25", epochs=1, train_data="fashion-mnist:train:256", eval_data="fashion-mnist:test:128")
print(json.dumps(train_reference(recipe, Path(sys.argv[1]), log=False)))
"""


def test_training_is_reproducible(tmp_path):
    # Each run in a fresh process, as `make reference-models` runs, with the recipe's default 2 threads.
    runs = []
    for folder in ("a", "b"):
        result = subprocess.run([sys.executable, "-c", TRAIN_ONCE, str(tmp_path / folder)], capture_output=True,
                                text=True, timeout=600)
        assert result.returncode == 0, result.stderr
        runs.append(json.loads(result.stdout.strip().splitlines()[-1]))
    first, second = runs
    assert first["sha256"] == second["sha256"]
    assert first["preprocessing"] == FASHION_MNIST_PREPROCESSING.to_dict()
    assert Preprocessing.from_dict(first["preprocessing"]) == FASHION_MNIST_PREPROCESSING


@pytest.mark.slow
@pytest.mark.parametrize("name", REQUIRED)
def test_eval_cli_reproduces_the_recorded_accuracy(name):
    result = subprocess.run([sys.executable, "-m", "edgemb", "eval", name, "--weights", "ref",
                             "--data", "fashion-mnist:test", "--json"], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    measured = json.loads(result.stdout)
    assert measured["n"] == 10_000 and measured["top1"] >= 0.90
    assert measured["top1"] == pytest.approx(reference_entries()[name]["metrics"]["top1"], abs=1e-4)


def test_one_manifest_every_entry_names_its_task_and_recipe():
    # classifiers, detectors and segmenters in the one manifest, each with the task of its zoo entry, a recipe that
    # `edgemb train-reference` knows and its measured metrics with their data
    from edgemb.training import RECIPES
    from edgemb.zoo import parse_model_name

    entries = reference_entries()
    assert {e["task"] for e in entries.values()} == {"classification", "detection", "segmentation"}
    for name, entry in entries.items():
        assert entry["task"] == parse_model_name(name).info.task
        assert name in RECIPES and parse_model_name(RECIPES[name].model).base_name == name
        assert entry["metrics"]["data"] == RECIPES[name].eval_data and entry["metrics"]["n"] > 0
    assert set(reference_entries("classification")) == set(REQUIRED)
    assert sorted(p.name for p in REFERENCE_DIR.glob("*.json")) == ["manifest.json"]


def test_train_all_trains_a_classifier_and_a_detector_into_the_one_manifest(tmp_path, monkeypatch):
    # `edgemb train-reference` is one command for every task: each recipe trains its own way, and both entries land
    # in one manifest.json with their task, file and measured metrics
    import edgemb.training as training
    from edgemb.training.classification import Recipe
    from edgemb.training.synthdet import TaskRecipe

    monkeypatch.setattr(training, "RECIPES", {
        "v1_0.25": Recipe("v1_0.25", epochs=1, train_data="fashion-mnist:train:256",
                          eval_data="fashion-mnist:test:64"),
        "ssdlite_v2_0.35": TaskRecipe("ssdlite_v2_0.35@64", epochs=1, init="v2_0.35", batch_size=8,
                                      train_data="synthdet:train:16", eval_data="synthdet:test:8")})
    entries = training.train_all(None, tmp_path, log=False)
    manifest = json.loads((tmp_path / "manifest.json").read_text())["models"]
    assert {name: e["task"] for name, e in manifest.items()} == {"v1_0.25": "classification",
                                                                 "ssdlite_v2_0.35": "detection"}
    assert [e["model"] for e in entries] == ["v1_0.25", "ssdlite_v2_0.35"]
    for entry in manifest.values():
        assert sha256_file(tmp_path / entry["file"]) == entry["sha256"]
    assert manifest["v1_0.25"]["metrics"]["n"] == 64 and 0.0 <= manifest["v1_0.25"]["metrics"]["top1"] <= 1.0
    assert manifest["ssdlite_v2_0.35"]["metrics"]["n"] == 8 and "map50" in manifest["ssdlite_v2_0.35"]["metrics"]
    with pytest.raises(EdgembError, match=r"no reference recipe for v9_1\.0"):
        training.train_all(["v9_1.0"], tmp_path)
