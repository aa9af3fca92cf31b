"""Training the detection and segmentation reference models on the synthetic set (`synthdet:`).

Same contract as edgemb/training/classification.py: fixed seeds and thread count, fp16 safetensors in
edgemb/zoo/reference/, a manifest entry with the recipe and the measured task metrics (mAP, mIoU) of the
shipped file. Small widths
and resolutions keep a recipe within minutes on two shared CPU cores; a detector's backbone may start from
the Fashion-MNIST classifier of the same family and width (`init`), which already knows the items.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from edgemb.artifacts import sha256_file, tool_versions
from edgemb.data.preprocess import normalize
from edgemb.data.synthetic import CLASSES, load_spec
from edgemb.errors import EdgembError
from edgemb.progress import progress
from edgemb.tasks import task_for
from edgemb.tasks.detection import default_boxes, encode, match_anchors
from edgemb.tasks.evaluate import evaluate_float
from edgemb.zoo.registry import parse_model_name
from edgemb.zoo.weights.catalog import REFERENCE_DIR
from edgemb.zoo.weights.load import load_model

NEGATIVES_PER_POSITIVE = 3  # SSD's hard-negative mining ratio


@dataclass(frozen=True)
class TaskRecipe:
    """Everything that determines a detection/segmentation reference model's weights."""

    model: str  # with its training resolution, e.g. ssdlite_v2_0.35@128
    epochs: int
    init: str | None = None  # classifier reference model whose features start the backbone
    resume: str | None = None  # a checkpoint of an earlier stage of this recipe to continue from (its sha256 recorded)
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    threads: int = 1
    train_data: str = "synthdet:train"
    eval_data: str = "synthdet:test"

    def train(self, out_dir: Path = REFERENCE_DIR, log: bool = True) -> dict[str, Any]:
        """Train this recipe's model (see train_task_reference)."""
        return train_task_reference(self, out_dir, log)


TASK_RECIPES: dict[str, TaskRecipe] = {
    r.model.split("@")[0]: r
    for r in (
        TaskRecipe("ssdlite_v2_0.35@96", epochs=3, init="v2_0.35"),
        TaskRecipe("lraspp_v3l_0.5@128", epochs=3, lr=5e-3),
    )
}


def _build(recipe: TaskRecipe) -> nn.Module:
    spec = parse_model_name(recipe.model)
    if recipe.resume is not None:
        from edgemb.zoo.weights.load import read_state_dict

        model = spec.build(len(CLASSES))
        model.load_state_dict(read_state_dict(Path(recipe.resume)), strict=True)
        return model
    if recipe.init is None:
        return spec.build(len(CLASSES))
    if spec.family != "ssdlite_v2":
        raise EdgembError(f"recipe {recipe.model}: backbone init from a classifier is wired for ssdlite_v2 only")
    classifier, _ = load_model(parse_model_name(recipe.init), "ref")
    from edgemb.zoo.detection import ssdlite_v2

    return ssdlite_v2(len(CLASSES), spec.alpha, classifier.features)


def detection_loss(cls_logits: torch.Tensor, regression: torch.Tensor, labels: torch.Tensor,
                   targets: torch.Tensor) -> torch.Tensor:
    """SSD loss: smooth-L1 on matched anchors plus cross-entropy with 3:1 hard-negative mining, per positive."""
    positive = labels > 0
    n_pos = positive.sum(1)
    total = n_pos.sum().clamp(min=1)
    box_loss = F.smooth_l1_loss(regression[positive], targets[positive], reduction="sum")
    ce = F.cross_entropy(cls_logits.flatten(0, 1), labels.flatten(), reduction="none").view_as(labels)
    negative = ce.clone().masked_fill(positive, float("-inf"))
    rank = negative.argsort(1, descending=True).argsort(1)
    hard = rank < (NEGATIVES_PER_POSITIVE * n_pos).clamp(min=NEGATIVES_PER_POSITIVE)[:, None]
    return (box_loss + ce[positive].sum() + ce[hard & ~positive].sum()) / total


def _flip_boxes(boxes: np.ndarray, width: int) -> np.ndarray:
    return np.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], axis=1) if len(boxes) \
        else boxes


def train_task_reference(recipe: TaskRecipe, out_dir: Path = REFERENCE_DIR, log: bool = True) -> dict[str, Any]:
    """Train one detection/segmentation reference model and store it with its measured task metrics."""
    from safetensors.torch import save_file

    spec = parse_model_name(recipe.model)
    task = task_for(spec, len(CLASSES))
    pp = spec.info.preprocessing.at_resolution(spec.resolution)
    torch.manual_seed(recipe.seed)
    torch.set_num_threads(recipe.threads)
    gen = torch.Generator().manual_seed(recipe.seed)
    train = load_spec(recipe.train_data, pp)
    model = _build(recipe)
    anchors = default_boxes(model.anchors, spec.resolution) if task.name == "detection" else None
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=recipe.lr,
                                  weight_decay=recipe.weight_decay)
    steps_per_epoch = len(train) // recipe.batch_size
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe.lr, pct_start=0.15,
                                                    total_steps=recipe.epochs * steps_per_epoch)
    started = time.perf_counter()
    history = []
    for epoch in range(recipe.epochs):
        model.train()
        order = torch.randperm(len(train), generator=gen).numpy()
        flips = (torch.rand(len(train), generator=gen) < 0.5).numpy()
        losses = []
        for step in progress(range(steps_per_epoch), desc=f"{recipe.model} epoch {epoch + 1}/{recipe.epochs}"):
            index = np.sort(order[step * recipe.batch_size: (step + 1) * recipe.batch_size])
            pixels = np.stack([train.pixels[i][:, ::-1] if flips[i] else train.pixels[i] for i in index])
            batch = torch.from_numpy(normalize(pixels, pp))
            if anchors is not None:
                matched = [match_anchors(anchors, _flip_boxes(train.boxes[i], spec.resolution) if flips[i]
                                         else train.boxes[i], train.labels[i]) for i in index]
                labels = torch.from_numpy(np.stack([m[0] for m in matched]))
                targets = torch.from_numpy(np.stack([encode(np.where(m[0][:, None] > 0, m[1], anchors), anchors)
                                                     for m in matched]))
                loss = detection_loss(*model(batch), labels, targets)
            else:
                masks = np.stack([train.masks[i][:, ::-1] if flips[i] else train.masks[i] for i in index])
                logits = F.interpolate(model(batch), size=batch.shape[-2:], mode="bilinear", align_corners=False)
                loss = F.cross_entropy(logits, torch.from_numpy(masks.astype(np.int64)))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(float(loss.detach()))
        history.append({"epoch": epoch + 1, "loss": round(float(np.mean(losses)), 4),
                        "seconds": round(time.perf_counter() - started, 1)})
        if log:
            print(json.dumps({"model": recipe.model, **history[-1]}), flush=True)
    model.eval()
    half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{spec.base_name}.safetensors"
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(half, str(tmp), metadata={"recipe": json.dumps(asdict(recipe), sort_keys=True)})
    os.replace(tmp, path)
    shipped = spec.build(len(CLASSES))
    shipped.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in half.items()}, strict=True)
    metrics = evaluate_float(task, shipped, pp, recipe.eval_data)
    return {
        "model": spec.base_name,
        "task": task.name,
        "file": path.name,
        "sha256": sha256_file(path),
        "size_bytes": path.stat().st_size,
        "num_classes": len(CLASSES),
        "classes": list(CLASSES),
        "preprocessing": pp.to_dict(),
        "recipe": asdict(recipe),
        "resumed_from": {"file": Path(recipe.resume).name, "sha256": sha256_file(Path(recipe.resume))}
        if recipe.resume else None,
        "metrics": {"data": recipe.eval_data, **metrics},
        "history": history,
        "train_seconds": round(time.perf_counter() - started, 1),
        "tools": tool_versions("torch", "numpy"),
    }
