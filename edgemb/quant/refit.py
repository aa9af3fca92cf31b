"""Weights refitted to the int8 model's own inputs, one layer after another (on by default, `--no-refit`).

Why: GPTQ (edgemb/quant/rounding.py) rounds each layer against its *float* inputs. In the int8 model a layer
reads *quantized* inputs, whose error (activation rounding and clipping above it) it can partly undo. With the
quantized input patches q and the float ones f of a layer on calibration data, the float weights that best map
q to the float output are W' = W C_fq (C_qq + l I)^-1 (least squares; l: a ridge of 1% of C_qq's mean diagonal);
W' is then rounded with GPTQ on C_qq, and the bias restores the float output's mean.

Layers are refitted in order, each one measured on the model that already holds the refitted layers above
it: refitting every layer from a single pass over-corrects, since each compensates errors its refitted producer
no longer makes (V2@224: 18.6 dB logits SQNR collapsed to -3.4 dB). Depthwise layers and layers with few input
rows per input dimension are left alone: refitting them hurt (V2@224, every layer in order: 14.6 dB against
18.5; all dense layers down to 7x7 maps: 18.7). Measured on 160 photos:calib crops outside the calibration
300 (never the evaluation set), V2@224 imagenet1k_v1, integer kernels: 18.5 -> 19.7 dB with the 13 layers
this gate admits, for about 50 s of quantize time. Like CLE, the refit is kept only if it raises the SQNR over
every graph output (edgemb.metrics.outputs_sqnr_db: a classifier's logits, a detector's scores and boxes) on
CHECK_SAMPLES calibration samples after the REFIT_SAMPLES it was fitted on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import torch

from edgemb.onnx_graph import Graph, run_batched, session, truncated
from edgemb.progress import progress
from edgemb.quant.qdq import QuantConfig, build_qdq
from edgemb.quant.quantizable import layers
from edgemb.quant.rounding import (
    RoundedLayer,
    _attrs,
    _group_of_row,
    _patches,
    _rows,
    choose_scales,
    gptq_round,
)

REFIT_SAMPLES = 64
CHECK_SAMPLES = 32  # calibration samples after the fitted ones: the refit is kept only if their outputs gain
RIDGE = 0.01  # of C_qq's mean diagonal
MIN_ROWS_PER_INPUT = 200  # im2col rows over all samples per input dimension a layer needs to be refitted


@dataclass
class CrossMoments:
    """Running sums of one layer's quantized and float input patches: means, C_qq and C_fq."""

    count: int = 0
    sum_q: np.ndarray | None = None
    sum_f: np.ndarray | None = None
    qq: np.ndarray | None = None
    fq: np.ndarray | None = None

    def add(self, q: torch.Tensor, f: torch.Tensor) -> None:
        """Accumulate patches shaped (groups, N, D) of the same positions."""
        q, f = q.double(), f.double()
        parts = (q.sum(1).numpy(), f.sum(1).numpy(), torch.bmm(q.transpose(1, 2), q).numpy(),
                 torch.bmm(f.transpose(1, 2), q).numpy())
        if self.sum_q is None:
            self.sum_q, self.sum_f, self.qq, self.fq = parts
        else:
            self.sum_q, self.sum_f = self.sum_q + parts[0], self.sum_f + parts[1]
            self.qq, self.fq = self.qq + parts[2], self.fq + parts[3]
        self.count += q.shape[1]

    def moments(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Means of q and f, centred C_qq and C_fq."""
        mq, mf = self.sum_q / self.count, self.sum_f / self.count
        return (mq, mf, self.qq / self.count - mq[:, :, None] * mq[:, None, :],
                self.fq / self.count - mf[:, :, None] * mq[:, None, :])


def refit_layer(w: np.ndarray, node: onnx.NodeProto, moments: CrossMoments, qmax: int,
                ridge: float = RIDGE) -> RoundedLayer:
    """Per-channel integer weights and bias shift mapping this layer's quantized inputs to its float output."""
    rows = _rows(w, node)
    mq, mf, cqq, cfq = moments.moments()
    if cqq.shape[0] != 1:
        raise ValueError("refit_layer handles dense layers only (one input covariance)")
    d = cqq.shape[1]
    damp = ridge * max(float(np.mean(np.diagonal(cqq[0]))), 1e-12)
    # W' (C_qq + l I) = W C_fq + l W: least squares, pulled towards W where inputs carry little signal.
    refitted = np.linalg.solve((cqq[0] + damp * np.eye(d)).T, (rows @ cfq[0] + damp * rows).T).T
    group = _group_of_row(len(rows), 1)
    scale = choose_scales(refitted, cqq, group, qmax)
    q = gptq_round(refitted, scale, cqq, group, qmax)
    shift = rows @ mf[0] - (q * scale[:, None]) @ mq[0]  # float output mean minus the int8 layer's
    noise = float(np.einsum("od,de,oe->", rows - q * scale[:, None], cqq[0], rows - q * scale[:, None]))
    signal = float(np.einsum("od,de,oe->", rows, cqq[0], rows))
    layout = q.T if node.op_type == "Gemm" and not _attrs(node).get("transB", 0) else q.reshape(w.shape)
    return RoundedLayer(layout.astype(np.int8), scale.astype(np.float32), shift.astype(np.float32),
                        round(10 * np.log10(max(signal, 1e-30) / max(noise, 1e-30)), 2))


def dense_convolutions(graph: Graph) -> list[tuple[str, onnx.NodeProto]]:
    """The layers a refit may touch: convolutions that are not grouped (depthwise)."""
    return [(name, node) for name, node in layers(graph)
            if node.op_type == "Conv" and _attrs(node).get("group", 1) == 1]


def refittable(graph: Graph, x: np.ndarray, float_session) -> list[tuple[str, onnx.NodeProto]]:
    """Dense convolutions with enough input rows (over `x`) per input dimension to be refitted safely;
    `float_session` outputs every dense convolution's input."""
    candidates = dense_convolutions(graph)
    tensors = sorted({node.input[0] for _, node in candidates})
    values = dict(zip(tensors, float_session.run(tensors, {graph.input_name: x[:1]}), strict=True))
    chosen = []
    for name, node in candidates:
        patches = _patches(node, values[node.input[0]], tuple(graph.array(node.input[1]).shape))
        if patches.shape[1] * len(x) >= MIN_ROWS_PER_INPUT * patches.shape[2]:
            chosen.append((name, node))
    return chosen


@torch.no_grad()  # scoped: a global switch would leak into training in the same process
def refit_layers(graph: Graph, ranges: dict[str, tuple[float, float]], config: QuantConfig,
                 rounded: dict[str, RoundedLayer], x: np.ndarray) -> tuple[dict[str, RoundedLayer], dict]:
    """`rounded` with the refittable layers refitted in order (or unchanged if that lowers the SQNR over every
    graph output on the calibration samples after the fitted ones), and what was done."""
    from edgemb.quant.correction import qdq_session

    if not config.per_channel:
        raise ValueError("--refit needs per-channel weights")
    check, x = x[REFIT_SAMPLES:REFIT_SAMPLES + CHECK_SAMPLES], x[:REFIT_SAMPLES]
    float_session = session(graph.model, sorted({node.input[0] for _, node in dense_convolutions(graph)}))
    todo = [(name, node) for name, node in refittable(graph, x, float_session) if name not in config.keep_float]
    inputs = sorted({node.input[0] for _, node in todo})
    float_inputs = (dict(zip(inputs, run_batched(session(truncated(graph.model, inputs)), x, inputs,
                                                 desc="refit (float inputs)"), strict=True)) if todo else {})
    current = dict(rounded)
    for name, node in progress(todo, desc="refit to int8 inputs", unit="layer"):
        model = build_qdq(graph, ranges, config, current)
        quantized_input = next(n.input[0] for n in model.graph.node
                               if n.op_type == node.op_type and n.input[1] == f"{node.input[1]}_dq")
        quant_session = qdq_session(truncated(model, [quantized_input]))
        shape = tuple(graph.array(node.input[1]).shape)
        moments = CrossMoments()
        for sample, f in zip(x, float_inputs[node.input[0]], strict=True):
            q = quant_session.run([quantized_input], {graph.input_name: sample[None]})[0]
            moments.add(_patches(node, q, shape), _patches(node, f[None], shape))
        current[name] = refit_layer(graph.array(node.input[1]), node, moments, config.weight_max)
    gate = {"refitted": [name for name, _ in todo], "samples": len(x), "check_samples": len(check)}
    if len(check):  # the whole refit is kept only if it raises the SQNR on samples it was not fitted on
        reference = run_batched(session(graph.model), check, desc="refit check (float)")
        scores = {key: round(_check_sqnr(build_qdq(graph, ranges, config, r), check, reference), 3)
                  for key, r in (("without", rounded), ("with", current))}
        gate.update(check_sqnr_db=scores, applied=scores["with"] > scores["without"])
        if not gate["applied"]:
            return rounded, gate
    return current, {**gate, "applied": True}


def _check_sqnr(model: onnx.ModelProto, x: np.ndarray, reference: list[np.ndarray]) -> float:
    """SQNR over every output (`outputs_sqnr_db`) of the QDQ model, run as float (the quantizer's own fidelity),
    on the check samples; `reference` holds the float graph's outputs on them."""
    from edgemb.metrics import outputs_sqnr_db
    from edgemb.quant.correction import qdq_session

    return outputs_sqnr_db(reference, run_batched(qdq_session(model), x, desc="refit check"))
