"""Parity metrics every backend is judged by: accuracy, drop, agreement, SQNR and cosine of the logits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

CONFIDENT = 0.5  # float top-1 probability from which a sample counts as confident
BOOTSTRAP_DRAWS = 2000
INTERVAL = 0.95
BOOTSTRAP_SEED = 0


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


def outputs_sqnr_db(reference: Sequence[np.ndarray], test: Sequence[np.ndarray]) -> float:
    """One SQNR in dB over every output of a model, for the quantizer's choices (sensitivity rankings, gates):
    -10 log10(mean over outputs of noise_k / signal_k), so one output gives exactly `sqnr_db`.

    Each output's error is taken relative to its own signal power, then the relative errors are averaged:
    - pooling all outputs (sum of signals / sum of noises) would let the output with the largest values (a
      detector's class logits beside its small box offsets, or a head in other units) drown a broken head;
    - the worst output alone (what a task's parity reports as `sqnr_db`) is right for a verdict but not for a
      ranking: a change that helps only the other outputs would count for nothing, and gains would jump
      whenever the worst output changes;
    - averaging dB would let one clean output hide a broken one (30 dB and 0 dB average to 15 dB; here they
      give 3.0 dB) and be infinite as soon as one output is exact.
    The mean of relative errors is led by the worst output, as it should be, while every output's improvement
    counts. Equal SQNRs give that SQNR; an exact output adds no error; an output with no signal but some error
    makes the whole -inf, as `sqnr_db` does.
    """
    if len(reference) != len(test) or not len(reference):
        raise ValueError(f"{len(reference)} reference outputs against {len(test)} test outputs")
    if len(reference) == 1:
        return sqnr_db(reference[0], test[0])
    ratios = []
    for ref, out in zip(reference, test, strict=True):
        ref = np.asarray(ref).astype(np.float64)
        noise = float(np.sum((ref - np.asarray(out).astype(np.float64)) ** 2))
        signal = float(np.sum(ref**2))
        ratios.append(0.0 if noise == 0.0 else float("inf") if signal == 0.0 else noise / signal)
    mean = float(np.mean(ratios))
    if mean == 0.0:
        return float("inf")
    return -10.0 * float(np.log10(mean))


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


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64."""
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def estimated_drop(float_logits: np.ndarray, quant_logits: np.ndarray, draws: int = BOOTSTRAP_DRAWS,
                   seed: int = BOOTSTRAP_SEED) -> dict[str, Any]:
    """Top-1 drop in points estimated without labels, taking the float model's probabilities as the truth.

    The point estimate is 100 * mean(p_float(float's class) - p_float(int8's class)). Its 95% interval must
    cover two sources of doubt: which samples were drawn, and which label each would carry. A bootstrap of the
    mean alone sees only the first and is far too narrow (on 10,000 Fashion-MNIST images it excluded the true
    drop). So each bootstrap draw resamples the samples *and* draws each one's label from p_float: a sample
    the two models agree on contributes 0 whatever its label; one they disagree on contributes +1 when the
    label is the float class, -1 when it is the int8 class, else 0.
    """
    probs = softmax(float_logits)
    float_cls, quant_cls = float_logits.argmax(1), quant_logits.argmax(1)
    rows = np.arange(len(probs))
    gain, loss = probs[rows, float_cls], probs[rows, quant_cls]
    differ = float_cls != quant_cls
    n = len(probs)
    point = 100.0 * float(np.mean(gain - loss)) if n else 0.0
    # Only disagreeing samples can move the drop: draw how often each is picked (multinomial counts of a
    # bootstrap of all n samples), then its labels.
    p_win, p_lose = gain[differ], loss[differ]
    rng = np.random.default_rng(seed)
    if n == 0 or len(p_win) == 0:
        low = high = 0.0
    else:
        share = len(p_win) / n
        totals = np.empty(draws)
        picked = rng.binomial(n, share, size=draws)  # how many of the n resampled are disagreements
        for d in range(draws):
            idx = rng.integers(0, len(p_win), size=picked[d])
            u = rng.random(picked[d])
            totals[d] = np.sum(u < p_win[idx]) - np.sum((u >= p_win[idx]) & (u < p_win[idx] + p_lose[idx]))
        drops = 100.0 * totals / n
        tail = 100.0 * (1 - INTERVAL) / 2
        low, high = (float(v) for v in np.percentile(drops, [tail, 100.0 - tail]))
    return {"est_drop": round(point, 4), "est_drop_low": round(low, 4), "est_drop_high": round(high, 4),
            "est_interval": INTERVAL, "n_disagree": int(differ.sum())}


def top5_overlap(reference: np.ndarray, test: np.ndarray) -> float:
    """Mean share of the float model's top-5 classes that the candidate also ranks in its top-5."""
    k = min(5, reference.shape[1])
    ref_top = np.argsort(-reference, axis=1)[:, :k]
    test_top = np.argsort(-test, axis=1)[:, :k]
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(ref_top, test_top, strict=True)]))


def accuracy(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Top-1 (and top-5 when there are more than 5 classes) as fractions."""
    result = {"top1": float(np.mean(logits.argmax(1) == labels))}
    if logits.shape[1] > 5:
        top5 = np.argsort(-logits, axis=1)[:, :5]
        result["top5"] = float(np.mean((top5 == labels[:, None]).any(axis=1)))
    return result


def parity(float_logits: np.ndarray, quant_logits: np.ndarray, labels: np.ndarray | None) -> dict[str, Any]:
    """Compare a candidate's logits with the float reference's on the same inputs.

    Agreement is also given on the samples where the float model is confident (top probability >=
    CONFIDENT), so a low-confidence data set can neither hide a regression nor fake one through near-ties.
    Every result carries the label-free estimated drop and its interval; labelled data adds the true drop.
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
                              "cosine": round(cosine(float_logits, quant_logits), 6),
                              **estimated_drop(float_logits, quant_logits)}
    if labels is not None:
        float_top1 = float(np.mean(float_logits.argmax(1) == labels))
        quant_top1 = float(np.mean(quant_logits.argmax(1) == labels))
        result.update(float_top1=float_top1, quant_top1=quant_top1,
                      drop=round(100.0 * (float_top1 - quant_top1), 3))
    return result
