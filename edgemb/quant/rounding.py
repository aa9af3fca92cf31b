"""Weight quantization that minimises each layer's output error on calibration data, not its weight error.

Rounding every weight to nearest (RTN) minimises |W - Wq|, but what matters is the layer output W x. With the
centred input covariance C and mean mu of a layer's input patches (im2col) on calibration data, the output error
of a quantized weight row splits exactly into dW C dW^T (noise) and dW mu (a mean shift). We therefore
1. choose each output channel's scale by searching the clipping that minimises dW C dW^T under RTN,
2. round column by column and push each column's rounding error onto the columns not yet rounded, weighted
   by the inverse covariance (GPTQ, Frantar et al. 2023: optimal-brain-quantization on layer outputs), and
3. remove the remaining mean shift through the bias (weight-error bias correction, Nagel et al. 2019, exact
   here because mu is measured, not estimated from BatchNorm statistics).
Depthwise layers get one 9x9 (k x k) covariance per channel, dense layers one shared covariance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx
import torch
import torch.nn.functional as F

from edgemb.onnx_graph import Graph, session
from edgemb.progress import progress
from edgemb.quant.quantizable import layers

DAMPING = 0.01  # fraction of the mean diagonal added to C: keeps the inverse stable for dead inputs
SCALE_FRACTIONS = np.linspace(0.5, 1.0, 11)


@dataclass
class InputStats:
    """Running im2col moments of one layer's input: sum of patches and of their outer products."""

    count: int = 0
    total: np.ndarray | None = None  # (groups, D)
    outer: np.ndarray | None = None  # (groups, D, D)

    def add(self, patches: torch.Tensor) -> None:
        """Accumulate patches shaped (groups, N, D)."""
        p = patches.float()
        s, o = p.sum(dim=1).double().numpy(), torch.bmm(p.transpose(1, 2), p).double().numpy()
        self.total = s if self.total is None else self.total + s
        self.outer = o if self.outer is None else self.outer + o
        self.count += patches.shape[1]

    def moments(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean (groups, D) and centred covariance (groups, D, D)."""
        mu = self.total / self.count
        return mu, self.outer / self.count - mu[:, :, None] * mu[:, None, :]


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _patches(node: onnx.NodeProto, x: np.ndarray, weight_shape: tuple[int, ...]) -> torch.Tensor:
    """Input patches of one sample as (groups, positions, D), D ordered like the weight's flattened row."""
    t = torch.from_numpy(np.ascontiguousarray(x))
    if node.op_type == "Gemm":
        if _attrs(node).get("transA", 0):
            t = t.T
        return t.reshape(1, -1, t.shape[-1])
    a = _attrs(node)
    k = tuple(weight_shape[2:])
    if k == (1, 1) and a.get("group", 1) == 1 and a.get("strides", [1, 1]) == [1, 1]:
        return t[0].reshape(t.shape[1], -1).T[None]
    pads = a.get("pads", [0] * 4)
    if pads[0] != pads[2] or pads[1] != pads[3]:
        t = F.pad(t, (pads[1], pads[3], pads[0], pads[2]))
        pads = [0, 0, 0, 0]
    cols = F.unfold(t, k, dilation=tuple(a.get("dilations", [1, 1])), padding=(pads[0], pads[1]),
                    stride=tuple(a.get("strides", [1, 1])))  # (1, C*kh*kw, L)
    groups = a.get("group", 1)
    d = cols.shape[1] // groups
    return cols[0].reshape(groups, d, -1).transpose(1, 2)


@torch.no_grad()  # scoped: a global switch would leak into training in the same process
def collect_input_stats(graph: Graph, nodes: Sequence[tuple[str, onnx.NodeProto]],
                        x: np.ndarray) -> dict[str, InputStats]:
    """im2col moments of every listed layer's input over the calibration samples (float graph)."""
    tensors = sorted({node.input[0] for _, node in nodes})
    sess = session(graph.model, tensors)
    input_name = sess.get_inputs()[0].name
    stats = {name: InputStats() for name, _ in nodes}
    shapes = {name: tuple(graph.array(node.input[1]).shape) for name, node in nodes}
    for sample in progress(x, desc="calibrate (layer inputs)", unit="img"):
        values = dict(zip(tensors, sess.run(tensors, {input_name: sample[None]}), strict=True))
        for name, node in nodes:
            stats[name].add(_patches(node, values[node.input[0]], shapes[name]))
    return stats


def _rows(w: np.ndarray, node: onnx.NodeProto) -> np.ndarray:
    """Weight as (out_channels, D) in the patch order of `_patches`."""
    if node.op_type == "Gemm" and not _attrs(node).get("transB", 0):
        return w.T.copy()
    return w.reshape(w.shape[0], -1).astype(np.float64)


def _quantize(w: np.ndarray, scale: np.ndarray, qmax: int) -> np.ndarray:
    return np.clip(np.round(w / scale[:, None]), -qmax, qmax)


def _group_of_row(rows: int, groups: int) -> np.ndarray:
    return np.repeat(np.arange(groups), rows // groups)


def _output_error(dw: np.ndarray, cov: np.ndarray, group: np.ndarray) -> np.ndarray:
    """dW C dW^T per output row (each row uses its group's covariance)."""
    if cov.shape[0] > 1:
        return np.einsum("od,ode,oe->o", dw, cov[group], dw, optimize=True)
    return ((dw @ cov[0]) * dw).sum(axis=1)


def choose_scales(w: np.ndarray, cov: np.ndarray, group: np.ndarray, qmax: int) -> np.ndarray:
    """Per output channel, the clipping (50-100% of |w|max) whose RTN rounding least disturbs the output."""
    absmax = np.maximum(np.abs(w).max(axis=1), 1e-12)
    best, best_err = absmax / qmax, np.full(len(w), np.inf)
    for fraction in SCALE_FRACTIONS:
        scale = absmax * fraction / qmax
        err = _output_error(w - _quantize(w, scale, qmax) * scale[:, None], cov, group)
        better = err < best_err
        best, best_err = np.where(better, scale, best), np.where(better, err, best_err)
    return best


def gptq_round(w: np.ndarray, scale: np.ndarray, cov: np.ndarray, group: np.ndarray, qmax: int) -> np.ndarray:
    """Integer weights rounded column by column with error feedback through the inverse covariance."""
    d = w.shape[1]
    damp = DAMPING * np.maximum(np.mean(np.diagonal(cov, axis1=1, axis2=2), axis=1), 1e-12)
    h = cov + damp[:, None, None] * np.eye(d)
    # Upper Cholesky factor U of H^-1 (H^-1 = U^T U): row i of U gives the OBQ update for the later columns.
    try:
        hinv = np.linalg.cholesky(np.linalg.inv(h)).transpose(0, 2, 1)
    except np.linalg.LinAlgError:  # degenerate inputs (e.g. constant calibration images): plain rounding
        return np.clip(np.round(w / scale[:, None]), -qmax, qmax)
    u = hinv[group] if cov.shape[0] > 1 else np.broadcast_to(hinv[0], (len(w), d, d))
    work = w.copy()
    q = np.zeros_like(w)
    for i in range(d):
        q[:, i] = np.clip(np.round(work[:, i] / scale), -qmax, qmax)
        err = (work[:, i] - q[:, i] * scale) / u[:, i, i]
        work[:, i + 1:] -= err[:, None] * u[:, i, i + 1:]
    return q


@dataclass
class RoundedLayer:
    """A layer's integer weights (in the original weight layout), scales, and what to add to its bias."""

    q: np.ndarray
    scales: np.ndarray
    bias_delta: np.ndarray
    output_sqnr_db: float


def round_layer(w: np.ndarray, node: onnx.NodeProto, stats: InputStats, per_channel: bool,
                qmax: int = 127) -> RoundedLayer:
    """Output-aware scales, GPTQ rounding and the mean shift they leave, for one Conv/Gemm weight."""
    rows = _rows(w, node)
    mu, cov = stats.moments()
    group = _group_of_row(len(rows), cov.shape[0])
    if per_channel:
        scale = choose_scales(rows, cov, group, qmax)
    else:
        absmax = max(float(np.abs(rows).max()), 1e-12)
        candidates = [absmax * f / qmax for f in SCALE_FRACTIONS]
        errors = [_output_error(rows - _quantize(rows, np.full(len(rows), s), qmax) * s, cov, group).sum()
                  for s in candidates]
        scale = np.full(len(rows), candidates[int(np.argmin(errors))])
    q = gptq_round(rows, scale, cov, group, qmax)
    dw = rows - q * scale[:, None]
    shift = np.einsum("od,od->o", dw, mu[group])
    signal = _output_error(rows, cov, group) + np.einsum("od,od->o", rows, mu[group]) ** 2
    noise = _output_error(dw, cov, group)
    sqnr = 10 * np.log10(max(signal.sum(), 1e-30) / max(noise.sum(), 1e-30))
    q_layout = q.T if node.op_type == "Gemm" and not _attrs(node).get("transB", 0) else q.reshape(w.shape)
    return RoundedLayer(q_layout.astype(np.int8), scale.astype(np.float32), shift.astype(np.float32),
                        round(float(sqnr), 2))


def round_layers(graph: Graph, x: np.ndarray, per_channel: bool, qmax: int = 127,
                 skip: Sequence[str] = ()) -> dict[str, RoundedLayer]:
    """Output-aware integer weights for every Conv/Gemm layer of the graph (by layer name)."""
    todo = [(name, node) for name, node in layers(graph) if name not in skip]
    stats = collect_input_stats(graph, todo, x)
    return {name: round_layer(graph.array(node.input[1]), node, stats[name], per_channel, qmax)
            for name, node in progress(todo, desc="round weights", unit="layer")}
