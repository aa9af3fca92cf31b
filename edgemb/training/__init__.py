"""Training the shipped reference models: one recipe per model, one command, one manifest.

`edgemb train-reference [MODEL ...]` (`make reference-models`) trains any of them. Classifiers learn
Fashion-MNIST (`classification.py`), detectors and segmenters the synthetic set with boxes and masks
(`synthdet.py`); each recipe knows how it trains (`recipe.train(out_dir)`), and every entry lands in the one
manifest (`manifest.py`) with its `task`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgemb.errors import EdgembError
from edgemb.training.classification import REFERENCE_RECIPES, Recipe
from edgemb.training.manifest import MANIFEST, update_manifest
from edgemb.training.synthdet import TASK_RECIPES, TaskRecipe
from edgemb.zoo.weights.catalog import REFERENCE_DIR

RECIPES: dict[str, Recipe | TaskRecipe] = {**REFERENCE_RECIPES, **TASK_RECIPES}  # by model name, without @R


def train_all(names: list[str] | None = None, out_dir: Path = REFERENCE_DIR, log: bool = True
              ) -> list[dict[str, Any]]:
    """Train the named reference models (all by default) and update the manifest after each."""
    names = names or list(RECIPES)
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        raise EdgembError(f"no reference recipe for {', '.join(unknown)}: known are {', '.join(RECIPES)}")
    entries = []
    for name in names:
        entry = RECIPES[name].train(out_dir, log)
        update_manifest(entry, out_dir / MANIFEST.name)
        entries.append(entry)
    return entries
