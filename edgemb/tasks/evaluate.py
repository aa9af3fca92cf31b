"""Float quality of a zoo model on labelled data: the reference every quantized artifact is held to.

`evaluate_model` is `edgemb eval` (top-1/top-5 of a classifier with its weights' own preprocessing);
`evaluate_float` scores a detector's or segmenter's float model on a synthetic set with ground truth (the
number a task reference model's manifest entry records).
"""

from __future__ import annotations

import time
from typing import Any

from torch import nn

from edgemb.data import load_data
from edgemb.data.preprocess import Preprocessing, normalize
from edgemb.errors import EdgembError
from edgemb.metrics import accuracy
from edgemb.tasks import Task, torch_outputs
from edgemb.zoo.inference import DEFAULT_BATCH, predict
from edgemb.zoo.prepared import prepare_model


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


def evaluate_float(task: Task, model: nn.Module, pp: Preprocessing, data_spec: str) -> dict[str, Any]:
    """The float model's task metrics on a synthetic set with ground truth."""
    from edgemb.data.synthetic import load_spec

    truth = load_spec(data_spec, pp)
    predictions = task.postprocess(torch_outputs(model, normalize(truth.pixels, pp)))
    return {"n": len(truth), **task.score(predictions, truth)}
