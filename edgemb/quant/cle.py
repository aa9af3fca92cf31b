"""Cross-layer equalization (Nagel et al. 2019) on the BN-folded ONNX graph, keeping the float function.

For two convolutions joined by a positively homogeneous activation, output channel i of the first can be
divided by s_i and input channel i of the second multiplied by s_i; choosing s_i = sqrt(r1_i / r2_i) gives
both the same per-channel range, which is what per-tensor weight quantization needs. ReLU commutes with the
scaling, ReLU6 does not: we rewrite Clip(0, 6) as Relu followed by Min with a per-channel bound 6/s_i, so the
network computes exactly the same function (checked by `equalization_error`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper

from edgemb.onnx_graph import Graph

SWEEPS = 8


@dataclass
class Pair:
    """Two convolutions to equalize and the activation between them (None for a linear link)."""

    first: onnx.NodeProto
    second: onnx.NodeProto
    activation: onnx.NodeProto | None
    bound: onnx.NodeProto | None  # the Min node carrying per-channel clip bounds, once created


def _only_consumer(g: Graph, tensor: str) -> onnx.NodeProto | None:
    consumers = g.consumers.get(tensor, [])
    return consumers[0] if len(consumers) == 1 and tensor not in g.output_names else None


def _is_conv_with_weight(g: Graph, node: onnx.NodeProto | None) -> bool:
    return node is not None and node.op_type == "Conv" and node.input[1] in g.initializers


def _group(node: onnx.NodeProto) -> int:
    return next((a.i for a in node.attribute if a.name == "group"), 1)


def channelwise_reader(g: Graph, node: onnx.NodeProto) -> bool:
    """A dense convolution, or a depthwise one with one filter per channel: the two kinds whose input channel c
    maps to one slice of the weight (column c, or filter c) that a per-channel rescale can divide. Grouped
    convolutions and depthwise multipliers above 1 mix that mapping and are left out."""
    group, weight_shape = _group(node), g.initializers[node.input[1]].dims
    return group == 1 or (weight_shape[1] == 1 and weight_shape[0] == group)


def find_pairs(g: Graph) -> list[Pair]:
    """Conv -> (Relu | Clip(0, 6) | Relu+Min | nothing) -> Conv chains with no other consumer in between."""
    pairs = []
    for first in g.nodes("Conv"):
        if first.input[1] not in g.initializers:
            continue
        nxt = _only_consumer(g, first.output[0])
        activation = bound = None
        if nxt is not None and nxt.op_type == "Clip":
            lo, hi = (g.const_scalar(n) if n else None for n in [*nxt.input, "", ""][1:3])
            if lo != 0.0 or hi is None:
                continue
            activation, nxt = nxt, _only_consumer(g, nxt.output[0])
        elif nxt is not None and nxt.op_type == "Relu":
            activation, nxt = nxt, _only_consumer(g, nxt.output[0])
            if nxt is not None and nxt.op_type == "Min" and nxt.input[1] in g.initializers:
                bound, nxt = nxt, _only_consumer(g, nxt.output[0])
        if not _is_conv_with_weight(g, nxt) or not channelwise_reader(g, nxt):
            continue
        out_channels = g.array(first.input[1]).shape[0]
        second_in = g.array(nxt.input[1]).shape[1] * _group(nxt)
        if out_channels == second_in:
            pairs.append(Pair(first, nxt, activation, bound))
    return pairs


def _relu6_to_relu_min(g: Graph, pair: Pair, channels: int) -> None:
    """Replace Clip(0, hi) by Relu -> Min(per-channel bound) so bounds can follow the channel scaling."""
    clip = pair.activation
    hi = g.const_scalar(clip.input[2])
    bound_name = f"{clip.output[0]}_cle_bound"
    g.set_array(bound_name, np.full((1, channels, 1, 1), hi, np.float32))
    relu = helper.make_node("Relu", [clip.input[0]], [f"{clip.output[0]}_cle_relu"], f"{clip.name}_cle_relu")
    minimum = helper.make_node("Min", [relu.output[0], bound_name], [clip.output[0]], f"{clip.name}_cle_min")
    nodes = list(g.graph.node)
    index = nodes.index(clip)
    nodes[index: index + 1] = [relu, minimum]
    g.graph.ClearField("node")
    g.graph.node.extend(nodes)
    g.refresh()
    pair.activation, pair.bound = relu, minimum


def _equalize(g: Graph, pair: Pair) -> float:
    """Rescale one pair in place; returns the largest |log s_i| applied (0 means converged)."""
    w1, w2 = g.array(pair.first.input[1]), g.array(pair.second.input[1])
    depthwise_second = _group(pair.second) > 1
    r1 = np.abs(w1).reshape(w1.shape[0], -1).max(axis=1)
    r2 = (np.abs(w2).reshape(w2.shape[0], -1).max(axis=1) if depthwise_second
          else np.abs(w2).transpose(1, 0, 2, 3).reshape(w2.shape[1], -1).max(axis=1))
    valid = (r1 > 0) & (r2 > 0)
    s = np.ones_like(r1)
    s[valid] = np.sqrt(r1[valid] / r2[valid])
    s = s.astype(np.float32)
    if pair.activation is not None and pair.activation.op_type == "Clip":
        _relu6_to_relu_min(g, pair, len(s))
    g.set_array(pair.first.input[1], w1 / s.reshape(-1, 1, 1, 1))
    if len(pair.first.input) > 2 and pair.first.input[2]:
        g.set_array(pair.first.input[2], g.array(pair.first.input[2]) / s)
    if pair.bound is not None:
        g.set_array(pair.bound.input[1], g.array(pair.bound.input[1]) / s.reshape(1, -1, 1, 1))
    if depthwise_second:
        g.set_array(pair.second.input[1], w2 * s.reshape(-1, 1, 1, 1))
    else:
        g.set_array(pair.second.input[1], w2 * s.reshape(1, -1, 1, 1))
    return float(np.max(np.abs(np.log(s)))) if len(s) else 0.0


def equalize(graph: Graph, sweeps: int = SWEEPS) -> tuple[Graph, int]:
    """A cross-layer-equalized copy of the graph and the number of conv pairs it equalized."""
    g = graph.copy()
    pairs = find_pairs(g)
    for _ in range(sweeps):
        change = 0.0
        for pair in pairs:
            change = max(change, _equalize(g, pair))
            g.refresh()
        if change < 1e-3:
            break
    return g, len(pairs)


def weight_range_spread(g: Graph) -> float:
    """Median over conv layers of (max channel range / median channel range): what CLE reduces."""
    spreads = []
    for node in g.nodes("Conv"):
        if node.input[1] in g.initializers:
            w = g.array(node.input[1])
            r = np.abs(w).reshape(w.shape[0], -1).max(axis=1)
            spreads.append(float(r.max() / max(np.median(r), 1e-12)))
    return float(np.median(spreads)) if spreads else 1.0
