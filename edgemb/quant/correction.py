"""Empirical bias correction and per-layer sensitivity, both measured with onnxruntime on calibration data.

Bias correction (Nagel et al. 2019, empirical variant): quantizing weights and inputs shifts each layer's
mean output; layer by layer, in graph order, we measure that shift per output channel on calibration samples
and subtract it from the float bias, so later layers see the corrected statistics.
"""

from __future__ import annotations

import numpy as np

from edgemb.metrics import sqnr_db
from edgemb.onnx_graph import Graph, run_batched, session
from edgemb.progress import progress
from edgemb.quant.qdq import QuantConfig, build_qdq, layers


def _channel_means(values: np.ndarray) -> np.ndarray:
    return values.mean(axis=(0, 2, 3)) if values.ndim == 4 else values.mean(axis=0)


def correct_biases(graph: Graph, ranges: dict[str, tuple[float, float]], config: QuantConfig,
                   x: np.ndarray) -> tuple[Graph, list[dict]]:
    """A copy of the float graph whose biases cancel the mean output shift that quantization causes."""
    g = graph.copy()
    todo = [(name, node) for name, node in layers(g) if name not in config.keep_float]
    tensors = [n.output[0] for _, n in todo]
    reference = run_batched(session(g.model, tensors), x, tensors, desc="bias correction (float)")
    float_means = {node.output[0]: _channel_means(values) for (_, node), values in zip(todo, reference, strict=True)}
    report = []
    for name, node in progress(todo, desc="bias correction", unit="layer"):
        quantized = build_qdq(g, ranges, config)
        measured = run_batched(session(quantized, [node.output[0]]), x, [node.output[0]], desc=name)[0]
        shift = (_channel_means(measured) - float_means[node.output[0]]).astype(np.float32)
        if len(node.input) > 2 and node.input[2]:
            g.set_array(node.input[2], g.array(node.input[2]) - shift)
        else:
            bias_name = f"{name}.bias_correction"
            g.set_array(bias_name, -shift)
            if len(node.input) == 2:
                node.input.append(bias_name)
            else:
                node.input[2] = bias_name
        g.refresh()
        report.append({"layer": name, "max_abs_shift": float(np.abs(shift).max())})
    return g, report


def rank_sensitivity(graph: Graph, ranges: dict[str, tuple[float, float]], config: QuantConfig,
                     x: np.ndarray) -> list[dict]:
    """Layers ranked by how much keeping each one in float raises the logits' SQNR (most sensitive first)."""
    reference = run_batched(session(graph.model), x, desc="sensitivity (float)")[0]
    base = sqnr_db(reference, run_batched(session(build_qdq(graph, ranges, config)), x, desc="sensitivity")[0])
    ranking = []
    for name, _ in progress(layers(graph), desc="sensitivity", unit="layer"):
        if name in config.keep_float:
            continue
        trial = QuantConfig(config.method, config.granularity, config.activation_type, [*config.keep_float, name])
        logits = run_batched(session(build_qdq(graph, ranges, trial)), x, desc=name)[0]
        gained = sqnr_db(reference, logits) - base
        ranking.append({"layer": name, "sqnr_gain_db": round(gained, 3)})
    return sorted(ranking, key=lambda r: -r["sqnr_gain_db"])
