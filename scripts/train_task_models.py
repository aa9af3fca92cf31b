"""Train the detection/segmentation reference models (edgemb/tasks/training.py recipes) and record them.

    python scripts/train_task_models.py [MODEL ...] [--out DIR]

Writes DIR/<model>.safetensors and updates DIR/manifest-tasks.json (default: edgemb/zoo/reference/).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgemb.tasks.training import TASK_RECIPES, train_task_reference
from edgemb.train import update_manifest
from edgemb.zoo.weights.catalog import REFERENCE_DIR, TASK_MANIFEST


def main() -> None:
    """Train each named recipe (default all) and update the manifest after each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help=f"recipes to train (default: {', '.join(TASK_RECIPES)})")
    parser.add_argument("--out", type=Path, default=REFERENCE_DIR)
    args = parser.parse_args()
    for name in args.models or list(TASK_RECIPES):
        entry = train_task_reference(TASK_RECIPES[name], args.out)
        update_manifest(entry, args.out / TASK_MANIFEST)
        print({k: entry[k] for k in ("model", "metrics", "train_seconds")}, flush=True)


if __name__ == "__main__":
    main()
