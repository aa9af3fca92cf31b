"""Training the classifier reference models on Fashion-MNIST: real trained MobileNets so parity means something.

A randomly initialised MobileNet gives nearly the same logits for every input, so "100% agreement" on it
proves nothing. These recipes train one model per family, reproducibly (fixed seeds, fixed thread count), and
store fp16 safetensors; the manifest entry (edgemb/training/manifest.py) records the recipe, the measured top-1
and top-5 as its `metrics`, and the sha256.
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

from edgemb.artifacts import sha256_file, tool_versions
from edgemb.data import Preprocessing, load_pixels, normalize
from edgemb.metrics import accuracy
from edgemb.progress import progress
from edgemb.zoo.inference import predict
from edgemb.zoo.registry import ModelSpec, parse_model_name
from edgemb.zoo.weights.catalog import REFERENCE_DIR

HISTORY_SAMPLES = 2000  # test images scored after each epoch (the final score uses all of them)
FASHION_MNIST_PREPROCESSING = Preprocessing(64, 64, (0.2860, 0.2860, 0.2860), (0.3530, 0.3530, 0.3530), "gray3")


@dataclass(frozen=True)
class Recipe:
    """Everything that determines a reference model's weights."""

    model: str
    epochs: int
    batch_size: int = 128
    lr: float = 4e-3
    weight_decay: float = 0.02
    label_smoothing: float = 0.1
    seed: int = 0
    threads: int = 2
    train_data: str = "fashion-mnist:train"
    eval_data: str = "fashion-mnist:test"

    def train(self, out_dir: Path = REFERENCE_DIR, log: bool = True) -> dict[str, Any]:
        """Train this recipe's model (see train_reference)."""
        return train_reference(self, out_dir, log)


REFERENCE_RECIPES: dict[str, Recipe] = {
    r.model: r
    for r in (
        Recipe("v1_0.25", epochs=10),
        Recipe("v1_1.0", epochs=4),
        Recipe("v2_0.35", epochs=10),
        Recipe("v2_1.0", epochs=4),
        Recipe("v3s_1.0", epochs=10),
        Recipe("v3l_1.0", epochs=4),
    )
}


def _augment(batch: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random translation (reflect-pad by 1/16 and crop) and horizontal flip, per sample."""
    n, _, h, w = batch.shape
    pad = h // 16
    padded = nn.functional.pad(batch, (pad, pad, pad, pad), mode="reflect")
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    flip = torch.rand(n, generator=gen) < 0.5
    out = torch.empty_like(batch)
    for i in range(n):
        crop = padded[i, :, dy[i]: dy[i] + h, dx[i]: dx[i] + w]
        out[i] = crop.flip(-1) if flip[i] else crop
    return out


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on BatchNorm and bias terms (standard for MobileNets)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        (no_decay if param.ndim <= 1 or name.endswith(".bias") else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def train_reference(recipe: Recipe, out_dir: Path = REFERENCE_DIR, log: bool = True) -> dict[str, Any]:
    """Train one reference model from its recipe and store it (fp16 safetensors) with its measured accuracy."""
    from safetensors.torch import save_file

    spec: ModelSpec = parse_model_name(recipe.model)
    pp = FASHION_MNIST_PREPROCESSING
    torch.manual_seed(recipe.seed)
    torch.set_num_threads(recipe.threads)
    gen = torch.Generator().manual_seed(recipe.seed)
    train = load_pixels(recipe.train_data, pp)
    test = load_pixels(recipe.eval_data, pp)
    x_test = normalize(test.pixels, pp)
    model = spec.build(len(train.classes)).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(_param_groups(model, recipe.weight_decay), lr=recipe.lr)
    steps_per_epoch = len(train.pixels) // recipe.batch_size
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe.lr, pct_start=0.15,
                                                    total_steps=recipe.epochs * steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    started = time.perf_counter()
    history = []
    for epoch in range(recipe.epochs):
        model.train()
        order = torch.randperm(len(train.pixels), generator=gen).numpy()
        bar = progress(range(steps_per_epoch), desc=f"{recipe.model} epoch {epoch + 1}/{recipe.epochs}")
        for step in bar:
            index = np.sort(order[step * recipe.batch_size: (step + 1) * recipe.batch_size])
            batch = _augment(torch.from_numpy(normalize(train.pixels[index], pp)), gen)
            batch = batch.contiguous(memory_format=torch.channels_last)
            loss = loss_fn(model(batch), torch.from_numpy(train.y[index]))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
        metrics = accuracy(predict(model, x_test[:HISTORY_SAMPLES]), test.y[:HISTORY_SAMPLES])
        history.append({"epoch": epoch + 1, "loss": round(float(loss.detach()), 4), "n": HISTORY_SAMPLES, **metrics,
                         "seconds": round(time.perf_counter() - started, 1)})
        if log:
            print(json.dumps({"model": recipe.model, **history[-1]}), flush=True)
    model = model.to(memory_format=torch.contiguous_format).eval()
    half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{recipe.model}.safetensors"
    tmp = path.with_name(f".{path.name}.tmp")
    # One metadata key: safetensors writes metadata in hash-map order, so two keys give two byte layouts.
    save_file(half, str(tmp), metadata={"recipe": json.dumps(asdict(recipe), sort_keys=True)})
    os.replace(tmp, path)
    # Measure what ships: the fp16 file loaded back into a float32 model.
    shipped = spec.build(len(train.classes))
    shipped.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in half.items()}, strict=True)
    final = accuracy(predict(shipped, x_test), test.y)
    return {
        "model": recipe.model,
        "task": "classification",
        "file": path.name,
        "sha256": sha256_file(path),
        "size_bytes": path.stat().st_size,
        "num_classes": len(train.classes),
        "classes": list(train.classes),
        "preprocessing": pp.to_dict(),
        "recipe": asdict(recipe),
        "metrics": {"data": recipe.eval_data, "n": len(x_test), **final},
        "history": history,
        "train_seconds": round(time.perf_counter() - started, 1),
        "tools": tool_versions("torch", "numpy"),
    }

