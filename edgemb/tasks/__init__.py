"""Tasks own the two ends of the chain: host-side post-processing of raw outputs and the parity metrics.

Backends, devices and the cache stay task-blind (a batch in, the network's raw outputs out). `task_for(spec)`
gives a detection or segmentation task object with `postprocess`, `score` (against ground truth) and `compare`
(candidate vs float); classification keeps its logits path (edgemb.metrics.parity) and gets None here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from edgemb.data.preprocess import Preprocessing, normalize
from edgemb.metrics import sqnr_db
from edgemb.progress import progress
from edgemb.tasks.detection import DetectionTask
from edgemb.tasks.segmentation import SegmentationTask
from edgemb.zoo.registry import ModelSpec

Task = DetectionTask | SegmentationTask
DEFAULT_BATCH = 16


def task_for(spec: ModelSpec, num_classes: int | None = None) -> Task | None:
    """The task object of a zoo entry at its resolution, or None for classifiers."""
    classes = num_classes or spec.info.default_classes
    if spec.info.task == "detection":
        return DetectionTask(spec.build(classes).anchors, spec.resolution, classes)
    if spec.info.task == "segmentation":
        return SegmentationTask(spec.resolution, classes)
    return None


@torch.no_grad()
def torch_outputs(model: nn.Module, x: np.ndarray, batch_size: int = DEFAULT_BATCH,
                  desc: str = "float") -> list[np.ndarray]:
    """Every raw output of a PyTorch model for float32 NCHW inputs, batched (a tuple output gives a list)."""
    model.eval()
    parts: list[list[np.ndarray]] = []
    for start in progress(range(0, len(x), batch_size), desc=desc, unit="batch"):
        out = model(torch.from_numpy(x[start: start + batch_size]))
        parts.append([o.numpy() for o in (out if isinstance(out, tuple | list) else (out,))])
    return [np.concatenate(column) for column in zip(*parts, strict=True)]


def output_sqnr(reference: list[np.ndarray], candidate: list[np.ndarray], names: tuple[str, ...]) -> dict[str, float]:
    """SQNR in dB of each raw output of a candidate against the float reference's."""
    return {name: round(sqnr_db(r, c), 3) for name, r, c in zip(names, reference, candidate, strict=True)}


def task_parity(task: Task, float_outputs: list[np.ndarray], candidate_outputs: list[np.ndarray],
                truth: Any = None) -> dict[str, Any]:
    """Candidate vs float on the same inputs: task metrics of both (when truth is known), drop in points,
    direct agreement of the decoded results, and the SQNR of every raw output."""
    reference = task.postprocess(float_outputs)
    candidate = task.postprocess(candidate_outputs)
    result: dict[str, Any] = {"task": task.name, "n": len(reference),
                              "sqnr_db": output_sqnr(float_outputs, candidate_outputs, task.output_names),
                              **task.compare(reference, candidate)}
    if truth is not None:
        key = "map" if task.name == "detection" else "miou"
        ours, theirs = task.score(reference, truth), task.score(candidate, truth)
        result.update({f"float_{k}": round(v, 4) for k, v in ours.items() if isinstance(v, float)})
        result.update({f"quant_{k}": round(v, 4) for k, v in theirs.items() if isinstance(v, float)})
        result["metric"] = key
        result["drop"] = round(100.0 * (ours[key] - theirs[key]), 3) + 0.0  # no "-0.0"
    return result


def evaluate_float(task: Task, model: nn.Module, pp: Preprocessing, data_spec: str) -> dict[str, Any]:
    """The float model's task metrics on a synthetic set with ground truth."""
    from edgemb.data.synthetic import load_spec

    truth = load_spec(data_spec, pp)
    predictions = task.postprocess(torch_outputs(model, normalize(truth.pixels, pp)))
    return {"n": len(truth), **task.score(predictions, truth)}
