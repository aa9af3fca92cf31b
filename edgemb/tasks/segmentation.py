"""Segmentation on the host: logits upsampled to the image and argmaxed in numpy, and the mask metrics.

The exported network ends at stride-8 class logits; every backend and the float reference share this code,
so float-vs-int8 comparisons measure the network alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgemb.tasks.base import budget_parity, synthdet_truth


def upsample_bilinear(logits: np.ndarray, size: int) -> np.ndarray:
    """(C, h, w) logits -> (C, size, size), bilinear with half-pixel centres (PyTorch's align_corners=False)."""
    _, height, width = logits.shape

    def axis(n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.clip((np.arange(size) + 0.5) * n_in / size - 0.5, 0.0, n_in - 1)
        low = np.floor(src).astype(np.int64)
        high = np.minimum(low + 1, n_in - 1)
        return low, high, (src - low).astype(np.float32)

    y0, y1, wy = axis(height)
    x0, x1, wx = axis(width)
    rows = logits[:, y0, :] * (1 - wy)[None, :, None] + logits[:, y1, :] * wy[None, :, None]
    return rows[:, :, x0] * (1 - wx)[None, None, :] + rows[:, :, x1] * wx[None, None, :]


def postprocess(logits: np.ndarray, resolution: int) -> np.ndarray:
    """One image's (C, h, w) logits -> its (R, R) class mask (uint8, 0 background)."""
    return upsample_bilinear(logits.astype(np.float32), resolution).argmax(0).astype(np.uint8)


def confusion(truth: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) pixel counts, rows the truth, columns the prediction."""
    if truth.shape != predicted.shape:
        raise ValueError(f"mask shapes differ: {truth.shape} vs {predicted.shape}")
    index = truth.astype(np.int64).ravel() * num_classes + predicted.astype(np.int64).ravel()
    return np.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def mask_metrics(truth: np.ndarray, predicted: np.ndarray, num_classes: int) -> dict[str, float]:
    """mIoU over the classes present in truth or prediction, and pixel accuracy (masks of any matching shape)."""
    matrix = confusion(truth, predicted, num_classes).astype(np.float64)
    inter = np.diag(matrix)
    union = matrix.sum(0) + matrix.sum(1) - inter
    present = union > 0
    iou = np.where(present, inter / np.where(present, union, 1.0), np.nan)
    return {"miou": float(np.nanmean(iou)) if present.any() else 1.0,
            "pixel_accuracy": float(inter.sum() / max(matrix.sum(), 1.0)),
            "per_class_iou": [None if np.isnan(v) else round(float(v), 4) for v in iou]}


class SegmentationTask:
    """Segmentation's two ends of the chain: masks from raw logits, and mask scores/comparisons."""

    name = "segmentation"
    output_names = ("seg_logits",)
    metric = "miou"  # mean IoU, in points for the budget
    metric_label = "mIoU"
    decoded = "masks"
    pictures = True  # a deploy draws truth, float and int8 masks for the first images
    report_fields = ("metric", "float_miou", "quant_miou", "float_pixel_accuracy", "quant_pixel_accuracy", "drop",
                     "est_drop", "est_drop_low", "est_drop_high", "est_basis", "agreement", "agreement_basis",
                     "mask_agreement", "miou_vs_float", "sqnr_db", "sqnr_db_outputs")

    def __init__(self, resolution: int, num_classes: int) -> None:
        self.resolution = resolution
        self.num_classes = num_classes

    def postprocess(self, outputs: list[np.ndarray]) -> list[np.ndarray]:
        """Batched raw logits [(N, C, h, w)] -> one (R, R) class mask per image."""
        return [postprocess(logits, self.resolution) for logits in outputs[0]]

    def score(self, predictions: list[np.ndarray], truth: Any) -> dict[str, Any]:
        """mIoU and pixel accuracy against ground-truth masks."""
        return mask_metrics(np.asarray(truth.masks), np.stack(predictions), self.num_classes)

    def compare(self, reference: list[np.ndarray], candidate: list[np.ndarray]) -> dict[str, Any]:
        """Candidate vs float masks: pixel agreement and the mIoU of the candidate with float masks as truth."""
        ref, cand = np.stack(reference), np.stack(candidate)
        vs_float = mask_metrics(ref, cand, self.num_classes)
        return {"mask_agreement": round(float(np.mean(ref == cand)), 6), "miou_vs_float": round(vs_float["miou"], 4)}

    def truth(self, data: Any, pp: Any) -> Any:
        """Ground-truth masks of an evaluation set read from synthdet (None for unlabelled data)."""
        return synthdet_truth(data, pp)

    def truth_results(self, truth: Any) -> list[np.ndarray]:
        """Ground-truth masks, to draw beside the predicted ones."""
        return list(truth.masks)

    def agreement(self, result: dict[str, Any]) -> tuple[float, str]:
        """Pixel agreement of the masks with float."""
        return result["mask_agreement"], "pixels with the float mask's class"

    def parity(self, float_outputs: list[np.ndarray], candidate_outputs: list[np.ndarray],
               truth: Any = None) -> dict[str, Any]:
        """mIoU drop in points with truth, else 100 x (1 - mIoU against float masks); see budget_parity."""
        return budget_parity(self, float_outputs, candidate_outputs, truth)
