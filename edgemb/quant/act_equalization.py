"""Activation equalization: give every channel of an 8-bit activation the tensor's full range of levels.

An activation is quantized per tensor: one step for all its channels. In MobileNets the channels of one tensor
span orders of magnitude (V2@224: many expand outputs peak far below ReLU6's 6), so a quiet channel gets a
handful of levels and the depthwise layer reading it amplifies that error. The convolution producing the tensor
is quantized per output channel, so scaling its channel c up by s_c costs its weights nothing; the consumer
divides its input channel c by s_c. A depthwise consumer is quantized per channel too, so that is free as well;
a dense consumer mixes channels in one weight row, so it takes only s_c ** DENSE_ALPHA (SmoothQuant's trade
between activation and weight difficulty).

Channels are only scaled up (s_c >= 1), to at most the tensor's calibration maximum over MARGIN, so ReLU6's
clip and the tensor's quantization range stay as they were: on calibration data the float function is
unchanged; a later input that exceeds a scaled channel's calibration peak is clipped at 6 / s_c, where the
8-bit range would have cut most of its resolution anyway. Measured on 160 photos:calib crops outside the
calibration 300 (never photos:eval), V2@224 imagenet1k_v1, integer kernels, GPTQ weights, percentile ranges:
18.5 dB logits SQNR without, 19.6 dB with depthwise consumers only, 20.0 dB with dense consumers at alpha 0.5
(19.8 at 0.75, 19.3 at 1.0). The quantize stage keeps it only when it raises held-out calibration SQNR.

Residual streams (the tensors a stage's Adds join, in V2 the 24- to 160-channel bottleneck outputs) are linear
and read by dense expand convolutions, and the last ones were the most sensitive activations of V2@224 (the
160-channel stream alone: 30-35 dB). They are equalized as one: every convolution writing the stream scales
channel c by the same s_c and every one reading it divides, so the sums stay exact; s_c is the largest that
keeps each tensor of the stream within its own range. With the default quantizer (GPTQ, auto ranges, refit),
V2@224 on photos:calib crops outside the calibration 300: 20.9 / 20.6 dB logits SQNR without (two halves of
those crops), 21.6 / 21.4 with. Scaling loud channels down as well (towards the median peak, alpha 0.5 or 0.75)
gave 21.7-21.8 / 21.4-21.5: no clear gain, and it would change the tensors' ranges, so channels only go up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from edgemb.onnx_graph import Graph, session
from edgemb.progress import progress
from edgemb.quant.cle import Pair, _group, _is_conv_with_weight, channelwise_reader, find_pairs

DENSE_ALPHA = 0.5
MAX_SCALE = 64.0
MARGIN = 1.5  # headroom over a scaled channel's calibration peak
DEAD = 1e-6  # a channel whose peak is below this is left alone (all zero after ReLU on calibration data)


def channel_extremes(graph: Graph, tensors: list[str], x: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Smallest and largest value of every channel of each tensor over the calibration samples (NCHW)."""
    sess = session(graph.model, tensors)
    input_name = sess.get_inputs()[0].name
    extremes: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for sample in progress(x, desc="calibrate (channel ranges)", unit="img"):
        for name, value in zip(tensors, sess.run(tensors, {input_name: sample[None]}), strict=True):
            flat = value[0].reshape(value.shape[1], -1)
            low, high = flat.min(axis=1), flat.max(axis=1)
            if name in extremes:
                low, high = np.minimum(extremes[name][0], low), np.maximum(extremes[name][1], high)
            extremes[name] = (low, high)
    return extremes


def channel_peaks(graph: Graph, tensors: list[str], x: np.ndarray) -> dict[str, np.ndarray]:
    """Largest |value| of every channel of each tensor over the calibration samples (NCHW)."""
    return {t: np.maximum(-low, high) for t, (low, high) in channel_extremes(graph, tensors, x).items()}


def range_keeping_scales(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Per channel, the largest scale that keeps the channel inside the tensor's own range over MARGIN, on both
    sides: an 8-bit activation is quantized over [min, max] of the whole tensor, so a scaled channel must not
    push either end out (a quiet channel that is mostly negative in a mostly positive tensor is bounded by the
    tensor's small negative end). Infinite for a dead channel (no value beyond DEAD on either side)."""
    tensor_low, tensor_high = min(float(low.min()), 0.0), max(float(high.max()), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        up = np.where(high > DEAD, tensor_high / (MARGIN * high), np.inf)
        down = np.where(low < -DEAD, tensor_low / (MARGIN * low), np.inf)
    return np.minimum(up, down)


def _scale_up(allowed: np.ndarray, exponent: float) -> np.ndarray:
    s = np.clip(np.where(np.isfinite(allowed), allowed, 1.0), 1.0, MAX_SCALE)
    return (s ** exponent).astype(np.float32)


def _linked_tensor(pair: Pair) -> str:
    last = pair.bound or pair.activation or pair.first
    return last.output[0]


def channel_scales(low: np.ndarray, high: np.ndarray, depthwise_consumer: bool) -> np.ndarray:
    """Scale-up factor per channel: quiet channels towards the tensor's range, never down, at most MAX_SCALE."""
    return _scale_up(range_keeping_scales(low, high), 1.0 if depthwise_consumer else DENSE_ALPHA)


def _multiply_output_channels(g: Graph, node: onnx.NodeProto, s: np.ndarray) -> None:
    g.set_array(node.input[1], g.array(node.input[1]) * s.reshape(-1, 1, 1, 1))
    if len(node.input) > 2 and node.input[2]:
        g.set_array(node.input[2], g.array(node.input[2]) * s)


def _divide_input_channels(g: Graph, node: onnx.NodeProto, s: np.ndarray) -> None:
    w = g.array(node.input[1])  # depthwise: one filter per channel; dense: one weight column per channel
    g.set_array(node.input[1], w / s.reshape(-1, 1, 1, 1) if _group(node) > 1 else w / s.reshape(1, -1, 1, 1))


def _scale_pair(g: Graph, pair: Pair, s: np.ndarray) -> None:
    _multiply_output_channels(g, pair.first, s)
    if pair.bound is not None:  # a per-channel ReLU bound written by CLE follows its channel
        g.set_array(pair.bound.input[1], g.array(pair.bound.input[1]) * s.reshape(1, -1, 1, 1))
    _divide_input_channels(g, pair.second, s)


@dataclass
class Stream:
    """Tensors joined by residual Adds, with the convolutions that write and read them.

    Every tensor of a stream carries the same channels, so one scale per channel can be applied to all of them
    at once: each producing convolution's output channel is multiplied by it and each reading convolution's
    input channel divided by it. The sums stay exact because both addends are scaled alike.
    """

    tensors: list[str]
    producers: list[onnx.NodeProto]
    consumers: list[onnx.NodeProto]


def find_streams(g: Graph) -> list[Stream]:
    """Residual streams whose every producer and reader is a convolution with constant weights (or an Add of the
    stream itself); a stream touching anything else (a graph output, pooling, a multiply) is left out."""
    parent: dict[str, str] = {}

    def root(t: str) -> str:
        while parent.get(t, t) != t:
            t = parent[t]
        return t

    for add in g.nodes("Add"):
        if len(add.input) != 2 or any(i in g.initializers or g.const_scalar(i) is not None for i in add.input):
            continue
        for t in (*add.input, add.output[0]):
            parent.setdefault(t, t)
        for t in add.input:
            parent[root(t)] = root(add.output[0])
    groups: dict[str, list[str]] = {}
    for t in parent:
        groups.setdefault(root(t), []).append(t)
    order = {t: i for i, t in enumerate(o for n in g.graph.node for o in n.output)}
    streams = []
    for tensors in groups.values():
        members = set(tensors)
        producers, consumers, ok = [], [], True
        for t in tensors:
            node = g.producer.get(t)
            if node is None or t in g.output_names:
                ok = False
            elif node.op_type == "Conv" and _is_conv_with_weight(g, node) and _group(node) == 1:
                producers.append(node)
            elif not (node.op_type == "Add" and set(node.input) <= members):
                ok = False
            for reader in g.consumers.get(t, []):
                if reader.op_type == "Add" and reader.output[0] in members:
                    continue
                if _is_conv_with_weight(g, reader) and reader.input[0] == t and channelwise_reader(g, reader):
                    if all(reader is not c for c in consumers):
                        consumers.append(reader)
                else:
                    ok = False
        channels = {g.array(n.input[1]).shape[0] for n in producers}
        channels |= {g.array(n.input[1]).shape[1] * _group(n) for n in consumers}
        if ok and producers and consumers and len(channels) == 1:
            streams.append(Stream(sorted(tensors, key=order.__getitem__), producers, consumers))
    return streams


def stream_scales(extremes: list[tuple[np.ndarray, np.ndarray]], dense_consumer: bool) -> np.ndarray:
    """One scale per channel for all tensors of a stream: the largest that keeps every tensor within its own
    range over MARGIN, never down, at most MAX_SCALE."""
    allowed = np.min([range_keeping_scales(low, high) for low, high in extremes], axis=0)
    return _scale_up(allowed, DENSE_ALPHA if dense_consumer else 1.0)


def _scale_stream(g: Graph, stream: Stream, s: np.ndarray) -> None:
    for node in stream.producers:
        _multiply_output_channels(g, node, s)
    for node in stream.consumers:
        _divide_input_channels(g, node, s)


def equalize_activations(graph: Graph, x: np.ndarray, streams: bool = True) -> tuple[Graph, dict[str, Any]]:
    """A copy of the graph whose linked activations have their quiet channels scaled up, and what was done.

    Links are convolution -> (ReLU, ReLU6 or nothing) -> convolution with no other reader in between
    (edgemb.quant.cle.find_pairs); residual streams (find_streams) are scaled as one; other activations (h-swish,
    SE products, concatenations) are left as they are.
    """
    g = graph.copy()
    pairs = [p for p in find_pairs(g) if p.activation is None or p.activation.op_type in ("Clip", "Relu")]
    tensors = [_linked_tensor(p) for p in pairs]
    residual = find_streams(g) if streams else []
    stream_tensors = [t for st in residual for t in st.tensors]
    extremes = channel_extremes(g, tensors + stream_tensors, x) if pairs or residual else {}
    scaled = {}
    for pair, tensor in zip(pairs, tensors, strict=True):
        s = channel_scales(*extremes[tensor], _group(pair.second) > 1)
        if np.any(s > 1.0):
            _scale_pair(g, pair, s)
            scaled[tensor] = {"channels_scaled": int(np.sum(s > 1.0)), "channels": len(s),
                              "max_scale": round(float(s.max()), 2),
                              "consumer": "depthwise" if _group(pair.second) > 1 else "dense"}
    for stream in residual:
        s = stream_scales([extremes[t] for t in stream.tensors], any(_group(n) == 1 for n in stream.consumers))
        if np.any(s > 1.0):
            _scale_stream(g, stream, s)
            scaled[stream.tensors[-1]] = {"channels_scaled": int(np.sum(s > 1.0)), "channels": len(s),
                                          "max_scale": round(float(s.max()), 2), "consumer": "residual stream",
                                          "stream_tensors": len(stream.tensors)}
    g.refresh()
    return g, {"links": len(pairs), "streams": len(residual), "tensors_scaled": len(scaled), "samples": len(x),
               "dense_alpha": DENSE_ALPHA,
               "max_scale": MAX_SCALE, "per_tensor": scaled}
