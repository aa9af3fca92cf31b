"""Activation statistics over calibration data and the clipping range each method derives from them.

Every method offered computes something different: `minmax` takes the observed extremes, `percentile`
drops the rarest 0.01% on each side, `mse` searches the clipping range that minimises the expected squared
quantization error under the observed histogram (what onnxruntime's stock Entropy option claims to do but,
through quantize_static, silently does not).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgemb.onnx_graph import session
from edgemb.progress import progress
from edgemb.quant.options import METHODS

# The one range method used when a single fixed method is needed (QuantConfig's default; the quantize stage's
# own default is edgemb.quant.options.DEFAULT_METHOD, "auto", which picks per model among its candidates).
# Measured best on every reference model (see results/quantization.json).
DEFAULT_RANGE_METHOD = "mse"
BINS = 2048
PERCENTILE = 99.99
MSE_CANDIDATES = 100


@dataclass
class TensorStats:
    """Running extremes plus a histogram over them for one activation tensor."""

    lo: float = np.inf
    hi: float = -np.inf
    hist: np.ndarray | None = None


def collect_stats(model, x: np.ndarray, names: Sequence[str], histograms: bool) -> dict[str, TensorStats]:
    """Run the float graph over calibration samples and record min/max (and histograms) of each tensor."""
    sess = session(model, names)
    input_name = sess.get_inputs()[0].name
    stats = {name: TensorStats() for name in names}
    for sample in progress(x, desc="calibrate (ranges)", unit="img"):
        for name, value in zip(names, sess.run(list(names), {input_name: sample[None]}), strict=True):
            s = stats[name]
            s.lo, s.hi = min(s.lo, float(value.min())), max(s.hi, float(value.max()))
    if histograms:
        for sample in progress(x, desc="calibrate (histograms)", unit="img"):
            for name, value in zip(names, sess.run(list(names), {input_name: sample[None]}), strict=True):
                s = stats[name]
                counts, _ = np.histogram(value, bins=BINS, range=_span(s))
                s.hist = counts if s.hist is None else s.hist + counts
    return stats


def _span(s: TensorStats) -> tuple[float, float]:
    lo, hi = min(s.lo, 0.0), max(s.hi, 0.0)
    return (lo, hi) if hi > lo else (lo, lo + 1e-6)


INTEGER_RANGES = {"uint8": (0, 255), "int8": (-128, 127), "uint16": (0, 65_535), "int16": (-32_768, 32_767)}


def quant_params(lo: float, hi: float, dtype: str) -> tuple[float, int]:
    """Affine scale and zero point for an 8-bit (or 16-bit) activation covering [lo, hi] (0 always representable)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    qmin, qmax = INTEGER_RANGES[dtype]
    scale = (hi - lo) / (qmax - qmin)
    if scale <= 0.0:
        return 1.0 / (qmax - qmin), 0
    zero_point = int(np.clip(round(qmin - lo / scale), qmin, qmax))
    return float(scale), zero_point


def _expected_error(centers: np.ndarray, counts: np.ndarray, lo: float, hi: float, dtype: str) -> float:
    scale, zp = quant_params(lo, hi, dtype)
    qmin, qmax = (0, 255) if dtype == "uint8" else (-128, 127)
    q = np.clip(np.round(centers / scale) + zp, qmin, qmax)
    return float(np.sum(counts * (centers - (q - zp) * scale) ** 2))


def choose_range(s: TensorStats, method: str, dtype: str = "uint8") -> tuple[float, float]:
    """Clipping range of one tensor under a calibration method."""
    lo, hi = _span(s)
    if method == "minmax" or s.hist is None or s.hist.sum() == 0:
        return lo, hi
    edges = np.linspace(lo, hi, BINS + 1)
    centers = (edges[:-1] + edges[1:]) / 2
    if method == "percentile":
        cdf = np.cumsum(s.hist) / s.hist.sum()
        tail = (100.0 - PERCENTILE) / 100.0
        new_lo = edges[np.searchsorted(cdf, tail)] if lo < 0 else 0.0
        new_hi = edges[min(np.searchsorted(cdf, 1.0 - tail) + 1, BINS)]
        return min(float(new_lo), 0.0), max(float(new_hi), 0.0)
    if method == "mse":
        best, best_err = (lo, hi), np.inf
        for fraction in np.linspace(1.0 / MSE_CANDIDATES, 1.0, MSE_CANDIDATES):
            candidate = (lo * fraction, hi * fraction)
            err = _expected_error(centers, s.hist, *candidate, dtype)
            if err < best_err:
                best, best_err = candidate, err
        return float(best[0]), float(best[1])
    raise ValueError(f"unknown calibration method {method!r}; choose from {', '.join(METHODS)}")


def weight_scales(w: np.ndarray, per_channel: bool, axis: int, mse: bool, qmax: int = 127) -> np.ndarray:
    """Symmetric int8 scales ([-qmax, qmax]) per output channel or per tensor; `mse` also searches clipping."""
    moved = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1) if per_channel else w.reshape(1, -1)
    absmax = np.abs(moved).max(axis=1)
    absmax = np.where(absmax == 0, 1e-8, absmax)
    if not mse:
        return (absmax / qmax).astype(np.float32)
    best = absmax / qmax
    best_err = np.full(len(absmax), np.inf)
    for fraction in np.linspace(0.5, 1.0, 51):
        scale = absmax * fraction / qmax
        q = np.clip(np.round(moved / scale[:, None]), -qmax, qmax) * scale[:, None]
        err = ((moved - q) ** 2).sum(axis=1)
        better = err < best_err
        best, best_err = np.where(better, scale, best), np.where(better, err, best_err)
    return best.astype(np.float32)
