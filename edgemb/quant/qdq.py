"""Build a QDQ int8 ONNX model from the BN-folded float graph and chosen activation ranges.

Layout follows what int8 runtimes pattern-match (onnxruntime's QLinear fusions, OpenVINO's low-precision
transformations): int8 weights with symmetric per-channel (or per-tensor) scales behind DequantizeLinear,
int32 biases with scale = input scale x weight scale, and a QuantizeLinear/DequantizeLinear pair on each
activation that feeds a quantized op. A Conv/Gemm followed only by an activation clamp (Relu/Clip/Min) is
quantized after the clamp, so runtimes fuse conv+activation. Layers named in `keep_float` keep float weights
and read their input unquantized; the logits stay float. Activations named in `wide_tensors` get 16-bit Q/DQ
(uint16 or int16, opset 21), the rescue tried before float: the layers reading them keep int8 weights.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper

from edgemb.onnx_graph import Graph
from edgemb.quant.quantizable import layers
from edgemb.quant.ranges import DEFAULT_RANGE_METHOD, INTEGER_RANGES, quant_params, weight_scales
from edgemb.quant.rounding import RoundedLayer

CLAMP_OPS = ("Relu", "Clip", "Min")
WIDE_OPSET = 21  # first opset whose QuantizeLinear/DequantizeLinear take 16-bit integers
ZERO_POINT_TYPES = {"uint8": np.uint8, "int8": np.int8, "uint16": np.uint16, "int16": np.int16}


@dataclass
class QuantConfig:
    """What the quantizer does; stored verbatim in quantize.json."""

    method: str = DEFAULT_RANGE_METHOD
    granularity: str = "per-channel"
    activation_type: str = "uint8"
    keep_float: list[str] = field(default_factory=list)
    weight_max: int = 127  # 63 where the target's int8 kernels need 7-bit weights (see edgemb/quant/isa.py)
    wide_tensors: list[str] = field(default_factory=list)  # activations raised to 16 bits
    # The full observed range of each activation, used when it is raised to 16 bits: the 8-bit range clips
    # outliers to save resolution, but 16 bits have resolution to spare, and clipping then is pure error
    # (V2@224 with every activation 16-bit: 23.9 dB logits SQNR with the 8-bit ranges, 33.2 with full ones).
    wide_ranges: dict[str, tuple[float, float]] = field(default_factory=dict)

    def activation_dtype(self, tensor: str) -> str:
        """The integer type of one activation tensor: 16-bit for the raised ones, else the configured 8-bit."""
        if tensor in self.wide_tensors:
            return "uint16" if self.activation_type == "uint8" else "int16"
        return self.activation_type

    def activation_range(self, tensor: str, ranges: dict[str, tuple[float, float]]) -> tuple[float, float]:
        """The range one activation is quantized over: its full range when raised to 16 bits (if known)."""
        if tensor in self.wide_tensors and tensor in self.wide_ranges:
            return self.wide_ranges[tensor]
        return ranges[tensor]

    @property
    def per_channel(self) -> bool:
        """Weights get one scale per output channel."""
        return self.granularity == "per-channel"


def activation_tensors(graph: Graph) -> list[str]:
    """Tensors that get a Q/DQ pair in a fully quantized model (their ranges are what calibration measures)."""
    names = [graph.input_name]
    for node in graph.graph.node:
        if node.op_type == "Constant":
            continue
        for out in node.output:
            consumers = graph.consumers.get(out, [])
            if out == graph.output_name or not consumers:
                continue
            if all(c.op_type in CLAMP_OPS for c in consumers) and len(consumers) == 1:
                continue  # quantize after the activation instead, so conv + activation fuse
            names.append(out)
    return names


INT8_RANGES_OF_16BIT = "edgemb.int8_ranges_of_16bit_activations"  # model metadata key, JSON {tensor: [lo, hi]}


def build_qdq(graph: Graph, ranges: dict[str, tuple[float, float]], config: QuantConfig,
              rounded: dict[str, RoundedLayer] | None = None) -> onnx.ModelProto:
    """A new QDQ model; `graph` is left untouched. `rounded` (by layer name) gives precomputed integer weights."""
    g = graph.copy()
    rounded = rounded or {}
    for name, node in layers(g):
        if name in rounded and name not in config.keep_float:
            add_to_bias(g, node, name, rounded[name].bias_delta)
    float_layers = set(config.keep_float)
    float_nodes = {id(n) for name, n in layers(g) if name in float_layers}
    new_nodes: list[onnx.NodeProto] = []
    act_scale: dict[str, float] = {}

    for tensor in activation_tensors(g):
        consumers = [c for c in g.consumers.get(tensor, []) if id(c) not in float_nodes]
        if not consumers or tensor not in ranges:
            continue
        dtype = config.activation_dtype(tensor)
        scale, zp = quant_params(*config.activation_range(tensor, ranges), dtype)
        if tensor not in config.wide_tensors:  # int32 biases only behind 8-bit inputs (integer kernels)
            act_scale[tensor] = scale
        g.set_array(f"{tensor}_scale", np.array(scale, np.float32))
        g.set_array(f"{tensor}_zero_point", np.array(zp, ZERO_POINT_TYPES[dtype]))
        params = [f"{tensor}_scale", f"{tensor}_zero_point"]
        new_nodes.append(helper.make_node("QuantizeLinear", [tensor, *params], [f"{tensor}_q"], f"{tensor}_Q"))
        new_nodes.append(helper.make_node("DequantizeLinear", [f"{tensor}_q", *params], [f"{tensor}_dq"],
                                          f"{tensor}_DQ"))
        for consumer in consumers:
            for i, name in enumerate(consumer.input):
                if name == tensor:
                    consumer.input[i] = f"{tensor}_dq"

    for name, node in layers(g):
        if name in float_layers:
            continue
        new_nodes += _quantize_weights(g, node, config, act_scale, rounded.get(name))

    # Q/DQ nodes must come right after their producers: rebuild the node list in topological order.
    _insert_topologically(g, new_nodes)
    g.model.graph.ClearField("value_info")
    if config.wide_tensors:
        for opset in g.model.opset_import:
            if opset.domain in ("", "ai.onnx"):
                opset.version = max(opset.version, WIDE_OPSET)
        eight_bit = {t: _representable_range(ranges[t], config.activation_type) for t in config.wide_tensors
                     if t in ranges}
        onnx.helper.set_model_props(g.model, {**{p.key: p.value for p in g.model.metadata_props},
                                              INT8_RANGES_OF_16BIT: json.dumps(eight_bit, sort_keys=True)})
    return g.model


def _representable_range(bounds: tuple[float, float], dtype: str) -> list[float]:
    """The range an 8-bit tensor quantized over `bounds` actually covers: zero point and scale snapped, as the
    8-bit Q/DQ pairs hold it (so a backend re-deriving them gets the same integers)."""
    scale, zero_point = quant_params(*bounds, dtype)
    qmin, qmax = INTEGER_RANGES[dtype]
    return [(qmin - zero_point) * scale, (qmax - zero_point) * scale]


def int8_ranges_of_16bit(model: onnx.ModelProto) -> dict[str, tuple[float, float]]:
    """The 8-bit range the quantize stage chose for each activation it then raised to 16 bits.

    A backend without 16-bit activations (TFLite int8, TFLite Micro, Vela) quantizes those tensors to 8 bits
    again; the 16-bit Q/DQ pair holds the full observed range, which at 8 bits clips nothing and wastes the
    resolution the chosen range keeps (V2@224 TFLite int8 from a QDQ model with two raised activations: 18.7 dB
    logits SQNR against the all-int8 QDQ model's 20.0)."""
    props = {p.key: p.value for p in model.metadata_props}
    return {t: (low, high) for t, (low, high) in json.loads(props.get(INT8_RANGES_OF_16BIT, "{}")).items()}


def add_to_bias(g: Graph, node: onnx.NodeProto, name: str, delta: np.ndarray) -> None:
    """Add `delta` to a layer's float bias, creating the bias input when the layer has none."""
    if len(node.input) > 2 and node.input[2]:
        g.set_array(node.input[2], g.array(node.input[2]) + delta)
        return
    bias_name = f"{name}.bias_correction"
    g.set_array(bias_name, delta.astype(np.float32))
    if len(node.input) == 2:
        node.input.append(bias_name)
    else:
        node.input[2] = bias_name


def _quantize_weights(g: Graph, node: onnx.NodeProto, config: QuantConfig, act_scale: dict[str, float],
                      rounded: RoundedLayer | None = None) -> list[onnx.NodeProto]:
    weight_name = node.input[1]
    w = g.array(weight_name)
    trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
    axis = 0 if node.op_type == "Conv" or trans_b else 1
    if rounded is not None:
        scales, q = rounded.scales, rounded.q
        if not config.per_channel and not np.all(scales == scales[0]):
            raise ValueError(f"per-tensor config got per-channel rounded weights for {weight_name}")
    else:
        scales = weight_scales(w, config.per_channel, axis, config.method != "minmax", config.weight_max)
        shape = [1] * w.ndim
        shape[axis] = -1
        broadcast = scales.reshape(shape) if config.per_channel else scales[0]
        q = np.clip(np.round(w / broadcast), -config.weight_max, config.weight_max).astype(np.int8)
    base = weight_name
    g.set_array(f"{base}_quantized", q)
    g.set_array(f"{base}_scale", scales if config.per_channel else np.array(scales[0], np.float32))
    zero = np.zeros(len(scales), np.int8) if config.per_channel else np.array(0, np.int8)
    g.set_array(f"{base}_zero_point", zero)
    attrs = {"axis": axis} if config.per_channel else {}
    nodes = [helper.make_node("DequantizeLinear", [f"{base}_quantized", f"{base}_scale", f"{base}_zero_point"],
                              [f"{base}_dq"], f"{base}_DQ", **attrs)]
    node.input[1] = f"{base}_dq"
    input_tensor = node.input[0][: -len("_dq")] if node.input[0].endswith("_dq") else None
    if len(node.input) > 2 and node.input[2] and input_tensor in act_scale:
        bias_name = node.input[2]
        bias = g.array(bias_name)
        bias_scale = np.maximum(act_scale[input_tensor] * np.broadcast_to(scales, bias.shape), 1e-30).astype(np.float32)
        q_bias = np.clip(np.round(bias.astype(np.float64) / bias_scale), -(2**31), 2**31 - 1).astype(np.int32)
        g.set_array(f"{bias_name}_quantized", q_bias)
        g.set_array(f"{bias_name}_scale", bias_scale)
        g.set_array(f"{bias_name}_zero_point", np.zeros(bias.shape, np.int32))
        nodes.append(helper.make_node("DequantizeLinear", [f"{bias_name}_quantized", f"{bias_name}_scale",
                                                           f"{bias_name}_zero_point"], [f"{bias_name}_dq"],
                                      f"{bias_name}_DQ", axis=0))
        node.input[2] = f"{bias_name}_dq"
    return nodes


def _insert_topologically(g: Graph, new_nodes: list[onnx.NodeProto]) -> None:
    """Merge new nodes into the graph so every node follows the producers of its inputs."""
    available = {i.name for i in g.graph.input} | set(g.initializers)
    pending = list(g.graph.node) + new_nodes
    ordered: list[onnx.NodeProto] = []
    while pending:
        progress_made = False
        remaining = []
        for node in pending:
            if all(not name or name in available for name in node.input):
                ordered.append(node)
                available.update(node.output)
                progress_made = True
            else:
                remaining.append(node)
        if not progress_made:
            raise RuntimeError(f"QDQ graph has a cycle or a missing input near {remaining[0].name}")
        pending = remaining
    g.graph.ClearField("node")
    g.graph.node.extend(ordered)
    # Unused float weights of quantized layers would double the file size.
    used = {name for node in ordered for name in node.input}
    keep = [t for t in g.graph.initializer if t.name in used]
    g.graph.ClearField("initializer")
    g.graph.initializer.extend(keep)
