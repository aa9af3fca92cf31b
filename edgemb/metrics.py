"""Parity metrics every backend is judged by: accuracy, drop, agreement, SQNR and cosine of the logits."""

from __future__ import annotations

from typing import Any

import numpy as np


def sqnr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio in dB: 10 log10(sum ref^2 / sum (ref - test)^2)."""
    reference = reference.astype(np.float64)
    noise = float(np.sum((reference - test.astype(np.float64)) ** 2))
    signal = float(np.sum(reference**2))
    if noise == 0.0:
        return float("inf")
    if signal == 0.0:
        return float("-inf")
    return 10.0 * float(np.log10(signal / noise))


def cosine(reference: np.ndarray, test: np.ndarray) -> float:
    """Mean per-sample cosine similarity of two logit matrices."""
    a = reference.reshape(len(reference), -1).astype(np.float64)
    b = test.reshape(len(test), -1).astype(np.float64)
    denom = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float(np.mean(np.sum(a * b, axis=1) / np.where(denom == 0, 1.0, denom)))


def parity(float_logits: np.ndarray, quant_logits: np.ndarray, labels: np.ndarray | None) -> dict[str, Any]:
    """Compare a candidate's logits with the float reference's on the same inputs."""
    if float_logits.shape != quant_logits.shape:
        raise ValueError(f"logit shapes differ: {float_logits.shape} vs {quant_logits.shape}")
    agree = float(np.mean(float_logits.argmax(1) == quant_logits.argmax(1)))
    result: dict[str, Any] = {"n": len(float_logits), "agreement": agree,
                              "sqnr_db": round(sqnr_db(float_logits, quant_logits), 3),
                              "cosine": round(cosine(float_logits, quant_logits), 6)}
    if labels is not None:
        float_top1 = float(np.mean(float_logits.argmax(1) == labels))
        quant_top1 = float(np.mean(quant_logits.argmax(1) == labels))
        result.update(float_top1=float_top1, quant_top1=quant_top1,
                      drop=round(100.0 * (float_top1 - quant_top1), 3))
    return result
