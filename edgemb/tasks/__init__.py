"""Tasks own the two ends of the chain: host-side post-processing of raw outputs and the parity metrics.

Backends, devices and the cache stay task-blind (a batch in, the network's raw outputs out). `task_for(spec)`
gives the task object of any zoo entry (classification, detection, segmentation), each with `output_names`,
`postprocess`, `score` (against ground truth), `compare` (candidate vs float), its primary `metric` and
`parity(float_outputs, candidate_outputs, truth)`: the dict an accuracy budget judges, in the task's points.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from edgemb.progress import progress
from edgemb.tasks.base import head, output_sqnr, run_outputs, take, task_parity
from edgemb.tasks.classification import ClassificationTask
from edgemb.tasks.detection import DetectionTask
from edgemb.tasks.segmentation import SegmentationTask
from edgemb.zoo.registry import ModelSpec

Task = ClassificationTask | DetectionTask | SegmentationTask
__all__ = ["ClassificationTask", "DetectionTask", "SegmentationTask", "Task", "head", "output_sqnr",
           "run_outputs", "take", "task_for", "task_parity", "torch_outputs"]
DEFAULT_BATCH = 16


def task_for(spec: ModelSpec, num_classes: int | None = None) -> Task:
    """The task object of a zoo entry at its resolution (classification, detection or segmentation)."""
    classes = num_classes or spec.info.default_classes
    if spec.info.task == "detection":
        return DetectionTask(spec.build(classes).anchors, spec.resolution, classes)
    if spec.info.task == "segmentation":
        return SegmentationTask(spec.resolution, classes)
    return ClassificationTask(classes)


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
