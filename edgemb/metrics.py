"""Parity metrics every backend is judged by: accuracy, drop, agreement, SQNR and cosine of the logits."""

from __future__ import annotations

from typing import Any

import numpy as np

CONFIDENT = 0.5  # float top-1 probability from which a sample counts as confident


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


def softmax_max(logits: np.ndarray) -> np.ndarray:
    """Each sample's top probability: how confident the model is in its top-1."""
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp.max(axis=1) / exp.sum(axis=1)


def top5_overlap(reference: np.ndarray, test: np.ndarray) -> float:
    """Mean share of the float model's top-5 classes that the candidate also ranks in its top-5."""
    k = min(5, reference.shape[1])
    ref_top = np.argsort(-reference, axis=1)[:, :k]
    test_top = np.argsort(-test, axis=1)[:, :k]
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(ref_top, test_top, strict=True)]))


def parity(float_logits: np.ndarray, quant_logits: np.ndarray, labels: np.ndarray | None) -> dict[str, Any]:
    """Compare a candidate's logits with the float reference's on the same inputs.

    Agreement is also given on the samples where the float model is confident (top probability >=
    CONFIDENT), so a low-confidence data set can neither hide a regression nor fake one through near-ties.
    """
    if float_logits.shape != quant_logits.shape:
        raise ValueError(f"logit shapes differ: {float_logits.shape} vs {quant_logits.shape}")
    same = float_logits.argmax(1) == quant_logits.argmax(1)
    confident = softmax_max(float_logits) >= CONFIDENT
    result: dict[str, Any] = {"n": len(float_logits), "agreement": float(np.mean(same)),
                              "n_confident": int(confident.sum()),
                              "agreement_confident": float(np.mean(same[confident])) if confident.any() else None,
                              "top5_overlap": round(top5_overlap(float_logits, quant_logits), 6),
                              "sqnr_db": round(sqnr_db(float_logits, quant_logits), 3),
                              "cosine": round(cosine(float_logits, quant_logits), 6)}
    if labels is not None:
        float_top1 = float(np.mean(float_logits.argmax(1) == labels))
        quant_top1 = float(np.mean(quant_logits.argmax(1) == labels))
        result.update(float_top1=float_top1, quant_top1=quant_top1,
                      drop=round(100.0 * (float_top1 - quant_top1), 3))
    return result
