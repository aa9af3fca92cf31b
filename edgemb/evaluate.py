"""Float accuracy of a zoo model on labelled data: the reference every quantized artifact is held to."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from edgemb.data import load_data
from edgemb.errors import EdgembError
from edgemb.zoo.inference import DEFAULT_BATCH, predict
from edgemb.zoo.prepared import prepare_model


def accuracy(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Top-1 (and top-5 when there are more than 5 classes) as fractions."""
    result = {"top1": float(np.mean(logits.argmax(1) == labels))}
    if logits.shape[1] > 5:
        top5 = np.argsort(-logits, axis=1)[:, :5]
        result["top5"] = float(np.mean((top5 == labels[:, None]).any(axis=1)))
    return result


def evaluate_model(model_name: str, weights: str | None, data: str, sha256: str | None = None,
                   batch_size: int = DEFAULT_BATCH) -> dict[str, Any]:
    """Load a model with its own preprocessing, read labelled data with it, and measure float accuracy."""
    prepared = prepare_model(model_name, weights, sha256)
    samples = load_data(data, prepared.preprocessing)
    if samples.y is None:
        raise EdgembError(f"{data} has no labels: use class sub-folders, a labels file or fashion-mnist")
    if int(samples.y.max()) >= prepared.num_classes:
        raise EdgembError(f"{data} has label {int(samples.y.max())} but {prepared.spec.name} predicts only "
                          f"{prepared.num_classes} classes: is this the data the weights were trained on?")
    started = time.perf_counter()
    logits = predict(prepared.model, samples.x, batch_size)
    return {
        "model": prepared.spec.name,
        "weights": prepared.weights.source if prepared.weights else None,
        "data": data,
        "n": len(samples),
        **accuracy(logits, samples.y),
        "skipped": len(samples.skipped),
        "preprocessing": prepared.preprocessing.to_dict(),
        "seconds": round(time.perf_counter() - started, 2),
    }
