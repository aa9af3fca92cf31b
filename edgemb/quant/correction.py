"""Empirical bias correction and per-layer sensitivity, both measured with onnxruntime on calibration data.

Bias correction (Nagel et al. 2019, empirical variant): quantizing weights and inputs shifts each layer's
mean output; we measure that shift per output channel against the float graph on calibration samples and
subtract it from the float bias, and keep it only for the layers where it lowers the output error on
calibration samples it was not fitted on (it can also hurt: the shift measured on few samples is noise).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import onnx

from edgemb.metrics import outputs_sqnr_db
from edgemb.onnx_graph import Graph, run_batched, session
from edgemb.progress import progress
from edgemb.quant.qdq import QuantConfig, add_to_bias, build_qdq
from edgemb.quant.quantizable import layer_name, layers

ITERATIONS = 3
RAISE_FIXED_MS, RAISE_MS_PER_ELEMENT = 0.094, 0.98e-6  # see raise_cost_ms


def _channel_means(values: np.ndarray) -> np.ndarray:
    return values.mean(axis=(0, 2, 3)) if values.ndim == 4 else values.mean(axis=0)


def rank_sensitivity(graph: Graph, ranges: dict[str, tuple[float, float]], config: QuantConfig,
                     x: np.ndarray, rounded: dict | None = None) -> list[dict]:
    """Layers ranked by how much keeping each one in float raises the SQNR over every graph output
    (`outputs_sqnr_db`: a detector's boxes and scores alike), most sensitive first."""
    reference = run_batched(session(graph.model), x, desc="sensitivity (float)")
    base = outputs_sqnr_db(reference, run_batched(session(build_qdq(graph, ranges, config, rounded)), x,
                                                  desc="sensitivity"))
    ranking = []
    for name, _ in progress(layers(graph), desc="sensitivity", unit="layer"):
        if name in config.keep_float:
            continue
        trial = replace(config, keep_float=[*config.keep_float, name])
        outputs = run_batched(session(build_qdq(graph, ranges, trial, rounded)), x, desc=name)
        gained = outputs_sqnr_db(reference, outputs) - base
        ranking.append({"layer": name, "sqnr_gain_db": round(gained, 3)})
    return sorted(ranking, key=lambda r: -r["sqnr_gain_db"])


def timed_run_all(model: onnx.ModelProto, x: np.ndarray, desc: str) -> tuple[list[np.ndarray], float]:
    """Every output of a model over batch-1 samples with onnxruntime (stacked per output), and its median
    milliseconds per sample: a task's parity decodes all of a detector's outputs."""
    seconds: list[float] = []
    outputs = run_batched(session(model), x, desc=desc, seconds=seconds)
    return outputs, 1000.0 * float(np.median(seconds))


def rank_wide_sensitivity(graph: Graph, ranges: dict[str, tuple[float, float]], config: QuantConfig,
                          x: np.ndarray, rounded: dict | None = None) -> list[dict]:
    """Activation tensors that raising alone to 16 bits helps, most SQNR over every graph output
    (`outputs_sqnr_db`) per estimated millisecond first.

    16 bits cost speed: runtimes have no 16-bit integer convolutions, so the layers writing and reading a raised
    tensor fall back to float with 16-bit Q/DQ around them. The most sensitive tensors of V2@224 are the early,
    large ones (raising the three best cost 2.0 ms on 2.5 ms of int8 here, almost float's 4.5 ms), so the gain
    is divided by a cost model of the step (`raise_cost_ms`). It is a model, not a timing, so that the same
    calibration data always gives the same rescue; the quantize report measures what the chosen one costs.
    """
    reference = run_batched(session(graph.model), x, desc="16-bit sensitivity (float)")
    base = outputs_sqnr_db(reference, run_batched(session(build_qdq(graph, ranges, config, rounded)), x,
                                                  desc="16-bit sensitivity"))
    floated = {id(node) for name, node in layers(graph) if name in config.keep_float}
    sizes = tensor_sizes(graph, list(ranges), x[:1])
    ranking = []
    for tensor in progress(list(ranges), desc="16-bit sensitivity", unit="tensor"):
        readers = [c for c in graph.consumers.get(tensor, []) if id(c) not in floated]
        if tensor in config.wide_tensors or not readers:
            continue
        trial = replace(config, wide_tensors=[*config.wide_tensors, tensor])
        outputs = run_batched(session(build_qdq(graph, ranges, trial, rounded)), x, desc=tensor)
        ranking.append({"tensor": tensor, "read_by": [layer_name(graph, c) if c.op_type in ("Conv", "Gemm")
                                                      else c.op_type for c in readers],
                        "sqnr_gain_db": round(outputs_sqnr_db(reference, outputs) - base, 3),
                        "elements": sizes[tensor], "cost_ms_model": round(raise_cost_ms(sizes[tensor]), 3)})
    return sorted(ranking, key=lambda r: -r["sqnr_gain_db"] / r["cost_ms_model"])


def raise_cost_ms(elements: int) -> float:
    """Milliseconds one tensor raised to 16 bits adds per image with onnxruntime: a fixed part (the neighbouring
    layers leave their fused integer kernels) and a part per element (16-bit Q/DQ, float convolution).

    Fitted on V2@224 on a 2-core AMD EPYC (AVX-512 VNNI): the three early tensors (1.75 M elements) added
    2.0 ms, the last eight (0.25 M) 1.0 ms. Only the order it gives matters, not its absolute value.
    """
    return RAISE_FIXED_MS + RAISE_MS_PER_ELEMENT * elements


def tensor_sizes(graph: Graph, names: list[str], x: np.ndarray) -> dict[str, int]:
    """Elements per sample of each named tensor of the float graph."""
    values = run_batched(session(graph.model, names), x, names, desc="tensor sizes")
    return {name: int(value[0].size) for name, value in zip(names, values, strict=True)}


def qdq_session(model: onnx.ModelProto, outputs: Sequence[str] = ()):
    """onnxruntime with graph optimisations off: QDQ runs as float, so this measures the quantizer itself."""
    import onnxruntime as ort

    proto = onnx.ModelProto()
    proto.CopyFrom(model)
    existing = {o.name for o in proto.graph.output}
    proto.graph.output.extend(onnx.ValueInfoProto(name=n) for n in outputs if n not in existing)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _layer_errors(float_sess, quant_sess, tensors: list[str], x: np.ndarray, desc: str
                  ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Per layer output: mean (quant - float) per channel, and mean squared error, over the samples."""
    name = float_sess.get_inputs()[0].name
    shift = {t: 0.0 for t in tensors}
    mse = {t: 0.0 for t in tensors}
    for sample in progress(x, desc=desc, unit="img"):
        ref = float_sess.run(tensors, {name: sample[None]})
        got = quant_sess.run(tensors, {name: sample[None]})
        for t, a, b in zip(tensors, ref, got, strict=True):
            diff = b.astype(np.float64) - a
            shift[t] = shift[t] + _channel_means(diff) / len(x)
            mse[t] += float(np.mean(diff**2)) / len(x)
    return shift, mse


def correct_mean_shifts(graph: Graph, ranges: dict[str, tuple[float, float]], config: QuantConfig,
                        x: np.ndarray, rounded: dict | None = None, iterations: int = ITERATIONS
                        ) -> tuple[Graph, list[dict]]:
    """Bias correction that is kept only for the layers where it lowers the output error on held-out samples.

    The mean output shift of every quantized layer is measured against the float graph on the even-numbered
    calibration samples and subtracted from its bias; repeating this a few times lets downstream layers see
    their corrected inputs (each pass is one run of the whole model, not one per layer). The odd-numbered
    samples then decide, layer by layer, whether the correction lowered that layer's output MSE; where it did
    not, the original bias is restored and the reason recorded.
    """
    todo = [(name, node) for name, node in layers(graph) if name not in config.keep_float]
    tensors = [node.output[0] for _, node in todo]
    fit, held_out = x[0::2], x[1::2]
    float_sess = qdq_session(graph.model, tensors)
    corrected = graph.copy()
    nodes = dict(layers(corrected))
    total = {name: np.zeros(0) for name, _ in todo}
    for step in range(iterations):
        quant = qdq_session(build_qdq(corrected, ranges, config, rounded), tensors)
        shift, _ = _layer_errors(float_sess, quant, tensors, fit, f"bias correction {step + 1}/{iterations}")
        for (name, _), tensor in zip(todo, tensors, strict=True):
            delta = -shift[tensor].astype(np.float32)
            add_to_bias(corrected, nodes[name], name, delta)
            total[name] = delta if total[name].size == 0 else total[name] + delta
        corrected.refresh()
        nodes = dict(layers(corrected))
    _, before = _layer_errors(float_sess, qdq_session(build_qdq(graph, ranges, config, rounded), tensors), tensors,
                              held_out, "bias correction (held-out, before)")
    _, after = _layer_errors(float_sess, qdq_session(build_qdq(corrected, ranges, config, rounded), tensors),
                             tensors, held_out, "bias correction (held-out, after)")
    result = graph.copy()
    result_nodes = dict(layers(result))
    report = []
    for (name, _), tensor in zip(todo, tensors, strict=True):
        helps = after[tensor] < before[tensor]
        if helps:
            add_to_bias(result, result_nodes[name], name, total[name])
        report.append({"layer": name, "applied": bool(helps), "max_abs_shift": float(np.abs(total[name]).max()),
                       "held_out_mse_before": before[tensor], "held_out_mse_after": after[tensor],
                       "reason": "lowers held-out output MSE" if helps else "raises held-out output MSE: skipped"})
    result.refresh()
    return result, report
