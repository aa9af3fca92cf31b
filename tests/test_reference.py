"""The shipped reference models: present, intact, trained (>= 90% top-1) and reproducible from their recipe."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edgemb.artifacts import sha256_file
from edgemb.data import Preprocessing
from edgemb.errors import EdgembError
from edgemb.train import FASHION_MNIST_PREPROCESSING, REFERENCE_RECIPES
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
        assert entry["accuracy"]["n"] == 10_000 and entry["accuracy"]["top1"] >= 0.90
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
from edgemb.train import Recipe, train_reference
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
    assert measured["top1"] == pytest.approx(reference_entries()[name]["accuracy"]["top1"], abs=1e-4)
