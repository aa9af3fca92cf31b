"""Resumable training: a recipe's training-cache folder and the newest checkpoint in it, written atomically.

An ImageNet-initialised detector or segmenter trains for hours on two cores, longer than one working session.
Its recipe saves the model, optimizer, scheduler, RNG states and its place (epoch, step, losses so far,
seconds trained) every few hundred steps and after every epoch; `edgemb train-reference` then continues where
an interrupted session stopped and ends with the weights an uninterrupted run gives. The folder is keyed by a
hash of the recipe, so a changed recipe never resumes from another recipe's checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from edgemb.cache import cache_dir

CHECKPOINT_GLOB = "checkpoint-e*-s*.pt"


def training_folder(model: str, recipe: dict[str, Any]) -> Path:
    """A folder keyed by a hash of `recipe`: $EDGEMB_CACHE/training/<model>-<hash> (one recipe's checkpoints;
    synthdet.features_path keys the cached features by the fields that determine them)."""
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]
    return cache_dir("training", f"{model}-{digest}")


def latest_checkpoint(folder: Path) -> dict[str, Any] | None:
    """The newest checkpoint in the folder (names sort by epoch, then step), or None before the first."""
    paths = sorted(folder.glob(CHECKPOINT_GLOB))
    return torch.load(paths[-1], map_location="cpu", weights_only=True) if paths else None


def save_checkpoint(folder: Path, state: dict[str, Any]) -> Path:
    """Write `state` (with its `epoch` and `step`) under a temporary name, rename it, then drop older ones, so an
    interrupted write leaves the previous checkpoint in place and never a half-written file that looks finished."""
    path = folder / f"checkpoint-e{state['epoch']:03d}-s{state['step']:05d}.pt"
    tmp = folder / f".{path.name}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)
    for old in folder.glob(CHECKPOINT_GLOB):
        if old != path:
            old.unlink()
    return path
