"""Classification's two ends of the chain: logits are the result, top-1 the score, edgemb.metrics.parity the
comparison with float (agreement, label-free estimated drop with its interval, SQNR; top-1 drop with labels)."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgemb.metrics import parity


class ClassificationTask:
    """A classifier: one `logits` output, scored by top-1 in points."""

    name = "classification"
    output_names = ("logits",)
    metric = "top1"
    metric_label = "top-1"
    decoded = "classes"
    pictures = False  # a class name says it all: a deploy draws no pictures for classifiers
    report_fields = ("float_top1", "quant_top1", "drop", "est_drop", "est_drop_low", "est_drop_high", "agreement",
                     "n_confident", "agreement_confident", "top5_overlap", "sqnr_db")

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes

    def postprocess(self, outputs: list[np.ndarray]) -> np.ndarray:
        """Batched raw outputs [(N, classes)] -> the logits themselves (argmax is the prediction)."""
        return outputs[0]

    def score(self, predictions: np.ndarray, truth: np.ndarray) -> dict[str, float]:
        """Top-1 accuracy against integer labels."""
        return {"top1": float(np.mean(predictions.argmax(1) == truth))}

    def compare(self, reference: np.ndarray, candidate: np.ndarray) -> dict[str, Any]:
        """Candidate vs float logits without labels: agreement, estimated drop, SQNR (edgemb.metrics.parity)."""
        return parity(reference, candidate, None)

    def truth(self, data: Any, pp: Any = None) -> np.ndarray | None:
        """The labels of an evaluation set, when it has them."""
        return data.y

    def agreement(self, result: dict[str, Any]) -> tuple[float, str]:
        """Top-1 agreement with float, and what it counts."""
        return result["agreement"], "same top-1 class as float"

    def parity(self, float_outputs: list[np.ndarray], candidate_outputs: list[np.ndarray],
               truth: np.ndarray | None = None) -> dict[str, Any]:
        """edgemb.metrics.parity of the logits: exactly what classification deploys always reported."""
        return parity(float_outputs[0], candidate_outputs[0], truth)
