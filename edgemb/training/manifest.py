"""The one manifest of the shipped reference models (edgemb/zoo/reference/manifest.json), written as they train.

Each entry names its model, its `task` (classification, detection, segmentation), the file with its sha256,
the preprocessing, the recipe, and the `metrics` measured on the shipped fp16 file (`data`, `n` and the task's
scores: top1/top5, map/map50, miou/pixel_accuracy). edgemb.zoo.weights.catalog reads it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgemb.artifacts import write_json
from edgemb.zoo.weights.catalog import REFERENCE_DIR, REFERENCE_MANIFEST

MANIFEST = REFERENCE_DIR / REFERENCE_MANIFEST
ABOUT = ("Reference models trained by `make reference-models` (`edgemb train-reference`): classifiers on "
         "Fashion-MNIST, detectors and segmenters on synthdet.")


def read_manifest(path: Path = MANIFEST) -> dict[str, dict[str, Any]]:
    """The reference models that exist, keyed by model name."""
    if not path.exists():
        return {}
    return json.loads(path.read_text())["models"]


def update_manifest(entry: dict[str, Any], path: Path = MANIFEST) -> None:
    """Record one trained model in the manifest, keeping the others."""
    models = read_manifest(path)
    models[entry["model"]] = entry
    write_json(path, {"about": ABOUT, "models": dict(sorted(models.items()))})
