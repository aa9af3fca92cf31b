"""Training the detection and segmentation reference models on the synthetic set (`synthdet:`).

Same contract as edgemb/training/classification.py: fixed seeds and thread count, fp16 safetensors in
edgemb/zoo/reference/, a manifest entry with the recipe and the measured task metrics (mAP, mIoU) of the
shipped file. A backbone may start from a trained classifier of the same width (`init`): the Fashion-MNIST
reference model, which already knows the items (small models, minutes), or torchvision's ImageNet checkpoint
(`imagenet1k_v1`, the models worth measuring, hours). The long recipes keep the first backbone blocks frozen
and train on their cached outputs (`frozen_prefix`, feature_cache.py), and checkpoint as they go so
`edgemb train-reference` resumes an interrupted run (`checkpoint_steps`, checkpoints.py).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from edgemb.artifacts import sha256_file, tool_versions
from edgemb.data.preprocess import Preprocessing, normalize
from edgemb.data.synthetic import CLASSES, SynthSet, load_spec
from edgemb.errors import EdgembError
from edgemb.progress import progress
from edgemb.tasks import task_for
from edgemb.tasks.detection import default_boxes, encode, match_anchors
from edgemb.tasks.evaluate import evaluate_float
from edgemb.training.checkpoints import latest_checkpoint, save_checkpoint, training_folder
from edgemb.training.feature_cache import prefix_features
from edgemb.zoo.detection import ssdlite_v2
from edgemb.zoo.registry import ModelSpec, parse_model_name
from edgemb.zoo.segmentation import lraspp_v2
from edgemb.zoo.weights.catalog import REFERENCE_DIR, TORCHVISION_WEIGHTS, NamedWeights
from edgemb.zoo.weights.load import load_model

NEGATIVES_PER_POSITIVE = 3  # SSD's hard-negative mining ratio
# Task families whose backbone is a zoo classifier's `features`: its family, and the builder that takes them.
BACKBONES: dict[str, tuple[str, Callable[..., nn.Module]]] = {"ssdlite_v2": ("v2", ssdlite_v2),
                                                              "lraspp_v2": ("v2", lraspp_v2)}
# Fields added after models shipped: left out of the recorded recipe while at their default (TaskRecipe.as_dict).
LATER_FIELDS = ("resume", "frozen_prefix", "checkpoint_steps")


@dataclass(frozen=True)
class TaskRecipe:
    """Everything that determines a detection/segmentation reference model's weights."""

    model: str  # with its training resolution, e.g. ssdlite_v2_0.35@128
    epochs: int
    # where the backbone starts: a classifier reference model (`v2_0.35`, Fashion-MNIST), or a published
    # checkpoint of the classifier of the same family and width (`imagenet1k_v1`), whose mean/std the recipe uses
    init: str | None = None
    resume: str | None = None  # a checkpoint of an earlier stage of this recipe to continue from (its sha256 recorded)
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    threads: int = 1
    train_data: str = "synthdet:train"
    eval_data: str = "synthdet:test"
    frozen_prefix: int = 0  # first backbone blocks kept frozen (eval mode, BN statistics too), their outputs cached
    checkpoint_steps: int = 0  # > 0: checkpoint every this many steps and every epoch, and resume from the newest

    def train(self, out_dir: Path = REFERENCE_DIR, log: bool = True) -> dict[str, Any]:
        """Train this recipe's model (see train_task_reference)."""
        return train_task_reference(self, out_dir, log)

    def as_dict(self) -> dict[str, Any]:
        """The recipe as the manifest and the weights file record it: fields added after a model shipped are left
        out while at their default, so a shipped model's recorded recipe is still the one its recipe writes."""
        defaults = {f.name: f.default for f in fields(self)}
        return {k: v for k, v in asdict(self).items() if k not in LATER_FIELDS or v != defaults[k]}


TASK_RECIPES: dict[str, TaskRecipe] = {
    r.model.split("@")[0]: r
    for r in (
        TaskRecipe("ssdlite_v2_0.35@96", epochs=3, init="v2_0.35"),
        TaskRecipe("lraspp_v3l_0.5@128", epochs=3, lr=5e-3),
        # ImageNet backbones (issue #18): blocks 0-6 (to output stride 8, 32x24x24 at 192) frozen and cached,
        # about 0.6 GB for 8000 images and their mirror images; 2 threads, checkpoints every 50 steps (~3 min).
        TaskRecipe("ssdlite_v2_1.0@192", epochs=3, init="imagenet1k_v1", lr=2e-3, threads=2, frozen_prefix=7,
                   checkpoint_steps=50),
        TaskRecipe("lraspp_v2_1.0@192", epochs=10, init="imagenet1k_v1", lr=2e-3, threads=2, frozen_prefix=7,
                   checkpoint_steps=50),
    )
}


def _named_init(recipe: TaskRecipe, spec: ModelSpec) -> NamedWeights | None:
    """The published classifier checkpoint `init` names (imagenet1k_v1 of v2_1.0 for ssdlite_v2_1.0), or None
    when `init` names a classifier reference model (or nothing)."""
    if recipe.init is None or spec.family not in BACKBONES:
        return None
    backbone = f"{BACKBONES[spec.family][0]}_{spec.alpha}"
    return next((w for w in TORCHVISION_WEIGHTS if w.model == backbone and w.tag == recipe.init), None)


def recipe_preprocessing(recipe: TaskRecipe) -> Preprocessing:
    """The family's whole-image preprocessing at the recipe's resolution, with the mean/std of the ImageNet
    checkpoint the backbone starts from (its frozen first blocks only make sense on inputs scaled as it was)."""
    spec = parse_model_name(recipe.model)
    pp = spec.info.preprocessing.at_resolution(spec.resolution)
    named = _named_init(recipe, spec)
    return replace(pp, mean=named.preprocessing.mean, std=named.preprocessing.std) if named else pp


def _init_features(recipe: TaskRecipe, spec: ModelSpec) -> nn.Sequential:
    """The trained classifier features the backbone starts from, strictly loaded; the classifier head is dropped."""
    if spec.family not in BACKBONES:
        raise EdgembError(f"recipe {recipe.model}: backbone init from a classifier is wired for "
                          f"{', '.join(BACKBONES)} only")
    named = _named_init(recipe, spec)
    if named is not None:
        classifier, _ = load_model(parse_model_name(named.model), named.tag)
    else:
        classifier, _ = load_model(parse_model_name(recipe.init), "ref")
    return classifier.features


def build_task_model(recipe: TaskRecipe) -> nn.Module:
    """The untrained model a recipe starts from: its backbone initialised as `init` says (heads fresh)."""
    spec = parse_model_name(recipe.model)
    if recipe.resume is not None:
        from edgemb.zoo.weights.load import read_state_dict

        model = spec.build(len(CLASSES))
        model.load_state_dict(read_state_dict(Path(recipe.resume)), strict=True)
        return model
    if recipe.init is None:
        return spec.build(len(CLASSES))
    return BACKBONES[spec.family][1](len(CLASSES), spec.alpha, _init_features(recipe, spec))


def _freeze_prefix(model: nn.Module, blocks: int) -> nn.Sequential | None:
    """The first `blocks` backbone blocks, taken out of training (no gradients, eval-mode BatchNorm)."""
    if not blocks:
        return None
    prefix = model.backbone_prefix(blocks)
    prefix.eval().requires_grad_(False)
    return prefix


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


Inputs = Callable[[np.ndarray, np.ndarray], torch.Tensor]  # (sorted image indices, flip per image) -> batch


def _pixel_inputs(train: SynthSet, pp: Preprocessing) -> Inputs:
    """Batches of normalized images, flipped where asked: what the whole network trains on."""
    def inputs(index: np.ndarray, flips: np.ndarray) -> torch.Tensor:
        pixels = np.stack([train.pixels[i][:, ::-1] if flips[i] else train.pixels[i] for i in index])
        return torch.from_numpy(normalize(pixels, pp))
    return inputs


def _cached_inputs(features: np.ndarray) -> Inputs:
    """Batches of a frozen prefix's cached outputs (of the flipped image where asked)."""
    def inputs(index: np.ndarray, flips: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(features[index, flips[index].astype(np.intp)].astype(np.float32))
    return inputs


def _batch_loss(model: nn.Module, batch: torch.Tensor, start: int, index: np.ndarray, flips: np.ndarray,
                train: SynthSet, anchors: np.ndarray | None, resolution: int) -> torch.Tensor:
    """The task's loss on one batch (`start`: backbone blocks the batch has already been through)."""
    if anchors is not None:
        matched = [match_anchors(anchors, _flip_boxes(train.boxes[i], resolution) if flips[i] else train.boxes[i],
                                 train.labels[i]) for i in index]
        labels = torch.from_numpy(np.stack([m[0] for m in matched]))
        targets = torch.from_numpy(np.stack([encode(np.where(m[0][:, None] > 0, m[1], anchors), anchors)
                                             for m in matched]))
        return detection_loss(*model(batch, start), labels, targets)
    masks = np.stack([train.masks[i][:, ::-1] if flips[i] else train.masks[i] for i in index])
    logits = F.interpolate(model(batch, start), size=masks.shape[-2:], mode="bilinear", align_corners=False)
    return F.cross_entropy(logits, torch.from_numpy(masks.astype(np.int64)))


@dataclass
class _Place:
    """Where a training run stands: what a checkpoint holds besides the model, optimizer and scheduler."""

    epoch: int = 0
    step: int = 0  # steps done in `epoch`
    losses: list[float] = field(default_factory=list)  # of `epoch` so far
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0  # trained in earlier sessions


def _checkpoint(folder: Path, recipe: TaskRecipe, place: _Place, seconds: float, model: nn.Module,
                optimizer: torch.optim.Optimizer, scheduler: Any, epoch_rng: torch.Tensor) -> None:
    """Save everything a resumed run needs to continue exactly (`epoch_rng`: the shuffling generator's state at
    the start of `place.epoch`, from which that epoch's order and flips are drawn again)."""
    save_checkpoint(folder, {
        "recipe": recipe.as_dict(), "epoch": place.epoch, "step": place.step, "losses": list(place.losses),
        "history": place.history, "seconds": seconds, "model": model.state_dict(),
        "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "generator": epoch_rng,
        "torch_rng": torch.get_rng_state()})


def _resume(folder: Path, recipe: TaskRecipe, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
            gen: torch.Generator, log: bool) -> _Place:
    """Load the newest checkpoint of this recipe into model, optimizer, scheduler and RNGs; where it stood."""
    saved = latest_checkpoint(folder)
    if saved is None:
        return _Place()
    if saved["recipe"] != recipe.as_dict():
        raise EdgembError(f"checkpoint in {folder} is of another recipe: remove the folder to start afresh")
    model.load_state_dict(saved["model"], strict=True)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    gen.set_state(saved["generator"])
    torch.set_rng_state(saved["torch_rng"])
    place = _Place(saved["epoch"], saved["step"], saved["losses"], saved["history"], saved["seconds"])
    if log:
        where = ("training finished" if place.epoch == recipe.epochs
                 else f"epoch {place.epoch + 1} of {recipe.epochs}, after step {place.step}")
        print(f"note: {recipe.model}: resumed from the checkpoint in {folder} ({where}; {place.seconds / 60:.0f} min "
              "trained before)", file=sys.stderr, flush=True)
    return place


def features_path(recipe: TaskRecipe) -> Path:
    """Where the frozen prefix's outputs are cached: keyed only by what determines them (model, initial weights,
    frozen blocks, training images), so a recipe that changes epochs or learning rate reuses them (about 13 min
    for 16,000 images at 192 on two cores)."""
    determines = {"model": recipe.model, "init": recipe.init, "frozen_prefix": recipe.frozen_prefix,
                  "train_data": recipe.train_data}
    return training_folder(f"{recipe.model}-features", determines) / "features.npy"


def train_task_reference(recipe: TaskRecipe, out_dir: Path = REFERENCE_DIR, log: bool = True) -> dict[str, Any]:
    """Train one detection/segmentation reference model and store it with its measured task metrics."""
    from safetensors.torch import save_file

    spec = parse_model_name(recipe.model)
    task = task_for(spec, len(CLASSES))
    pp = recipe_preprocessing(recipe)
    torch.manual_seed(recipe.seed)
    torch.set_num_threads(recipe.threads)
    gen = torch.Generator().manual_seed(recipe.seed)
    train = load_spec(recipe.train_data, pp)
    model = build_task_model(recipe)
    prefix = _freeze_prefix(model, recipe.frozen_prefix)
    anchors = default_boxes(model.anchors, spec.resolution) if task.name == "detection" else None
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=recipe.lr,
                                  weight_decay=recipe.weight_decay)
    steps_per_epoch = len(train) // recipe.batch_size
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe.lr, pct_start=0.15,
                                                    total_steps=recipe.epochs * steps_per_epoch)
    folder = training_folder(recipe.model, recipe.as_dict()) if recipe.checkpoint_steps else None
    place = _resume(folder, recipe, model, optimizer, scheduler, gen, log) if recipe.checkpoint_steps else _Place()
    started = time.perf_counter()

    def seconds() -> float:
        return place.seconds + time.perf_counter() - started

    if prefix is None or place.epoch == recipe.epochs:
        inputs = _pixel_inputs(train, pp)
    else:
        inputs = _cached_inputs(prefix_features(prefix, train.pixels, pp, features_path(recipe),
                                                f"{recipe.model}: blocks 0-{recipe.frozen_prefix - 1} (frozen)"))
    for epoch in range(place.epoch, recipe.epochs):
        model.train()
        if prefix is not None:
            prefix.eval()
        epoch_rng = gen.get_state()
        order = torch.randperm(len(train), generator=gen).numpy()
        flips = (torch.rand(len(train), generator=gen) < 0.5).numpy()
        bar = progress(range(place.step, steps_per_epoch), desc=f"{recipe.model} epoch {epoch + 1}/{recipe.epochs}",
                       initial=place.step, total=steps_per_epoch)
        for step in bar:
            index = np.sort(order[step * recipe.batch_size: (step + 1) * recipe.batch_size])
            loss = _batch_loss(model, inputs(index, flips), recipe.frozen_prefix, index, flips, train, anchors,
                               spec.resolution)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            place.losses.append(float(loss.detach()))
            place.step = step + 1
            if recipe.checkpoint_steps and place.step % recipe.checkpoint_steps == 0 and place.step < steps_per_epoch:
                bar.set_postfix(loss=f"{np.mean(place.losses[-recipe.checkpoint_steps:]):.3f}")
                _checkpoint(folder, recipe, place, seconds(), model, optimizer, scheduler, epoch_rng)
        place.history.append({"epoch": epoch + 1, "loss": round(float(np.mean(place.losses)), 4),
                              "seconds": round(seconds(), 1)})
        place.epoch, place.step, place.losses = epoch + 1, 0, []
        if recipe.checkpoint_steps:
            _checkpoint(folder, recipe, place, seconds(), model, optimizer, scheduler, gen.get_state())
        if log:
            previous = place.history[-2]["seconds"] if len(place.history) > 1 else 0.0
            print(json.dumps({"model": recipe.model, **place.history[-1],
                              "epoch_seconds": round(place.history[-1]["seconds"] - previous, 1)}), flush=True)
    model.eval()
    half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{spec.base_name}.safetensors"
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(half, str(tmp), metadata={"recipe": json.dumps(recipe.as_dict(), sort_keys=True)})
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
        "recipe": recipe.as_dict(),
        "resumed_from": {"file": Path(recipe.resume).name, "sha256": sha256_file(Path(recipe.resume))}
        if recipe.resume else None,
        "metrics": {"data": recipe.eval_data, **metrics},
        "history": place.history,
        "train_seconds": round(seconds(), 1),
        "tools": tool_versions("torch", "numpy"),
    }
