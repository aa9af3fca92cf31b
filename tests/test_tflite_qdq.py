"""The TFLite int8 artifact carries edgemb's quantization (#17, deliverable 4): made from the quantize stage's QDQ
model, it reaches that model's fidelity, with its integer weights, scales and activation parameters; only without
a QDQ model does ai-edge-quantizer calibrate on its own, and the artifact says which it holds."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from edgemb.backends.base import BuildInputs, needs_qdq_model
from edgemb.backends.tflite_backend import TfliteBackend, TfliteRunner
from edgemb.backends.tflite_qdq import OnnxModule
from edgemb.data import load_data
from edgemb.errors import EdgembError
from edgemb.metrics import estimated_drop, sqnr_db
from edgemb.onnx_graph import run_batched, session
from edgemb.targets import get_target
from edgemb.zoo.prepared import prepare_model
from tests.stages import qdq_as_float_session, qdq_model

MODEL = "v2_0.35@64"
CALIB = "fashion-mnist:train:128"
EVAL = "fashion-mnist:test:300"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The QDQ model, and the TFLite int8 artifact built with it and without it (ai-edge-quantizer's own)."""
    root = tmp_path_factory.mktemp("tflite-qdq")
    qdq = qdq_model(MODEL, "x86", root / "quantize", CALIB)
    prepared = prepare_model(MODEL, "ref")
    calibration = load_data(CALIB, prepared.preprocessing).x

    def build(name: str, options: dict):
        out, scratch = root / name, root / f"{name}-scratch"
        out.mkdir()
        scratch.mkdir()
        inputs = BuildInputs(prepared, root / "unused.onnx", calibration, out, scratch, options)
        return TfliteBackend().build(inputs, get_target("x86"), "int8", out)

    return prepared, qdq, build("edgemb", {"qdq_model": qdq}), build("own", {})


@pytest.mark.slow
def test_tflite_int8_reaches_the_qdq_models_fidelity_where_its_own_calibration_does_not(built):
    """Logits SQNR within 1 dB and estimated drop within 0.2 points of the QDQ model (onnxruntime's integer
    run) on the same samples; ai-edge-quantizer's own calibration of the float model falls short of that."""
    prepared, qdq, ours, own = built
    x = load_data(EVAL, prepared.preprocessing).x
    reference = prepared.float_logits(x)
    qdq_logits = run_batched(session(qdq), x)[0]
    ours_logits = TfliteRunner(ours.path).run(x)
    own_logits = TfliteRunner(own.path).run(x)
    qdq_sqnr, ours_sqnr, own_sqnr = (sqnr_db(reference, y) for y in (qdq_logits, ours_logits, own_logits))
    assert ours_sqnr >= qdq_sqnr - 1.0, (ours_sqnr, qdq_sqnr)
    assert abs(estimated_drop(reference, ours_logits)["est_drop"]
               - estimated_drop(reference, qdq_logits)["est_drop"]) <= 0.2
    assert own_sqnr < qdq_sqnr - 1.0, (own_sqnr, qdq_sqnr)  # the old path would fail the first assertion


@pytest.mark.slow
def test_tflite_int8_holds_edgembs_integer_weights_scales_and_activation_parameters(built):
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_litert.tools import flatbuffer_utils

    _, qdq, ours, _ = built
    record = ours.extra
    assert record["quantizer"].startswith("edgemb")
    assert record["layers_from_edgemb"] == record["layers_in_qdq"] == 53
    assert record["activations_from_edgemb"] == record["activations_8bit_in_qdq"]
    assert "activations_not_carried" not in record and "layers_not_carried" not in record

    proto = onnx.load(str(qdq))
    consts = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    model = flatbuffer_utils.read_model(str(ours.path))
    graph = model.subgraphs[0]
    int8 = [(np.frombuffer(bytes(model.buffers[t.buffer].data), np.int8).reshape(list(t.shape)),
             np.array(t.quantization.scale, np.float32)) for t in graph.tensors if t.type == 9 and  # INT8
            model.buffers[t.buffer].data is not None and len(model.buffers[t.buffer].data)]
    layouts = {"features.0.0": (0, 2, 3, 1), "features.1.conv.0.0": (1, 2, 3, 0),  # conv OHWI, depthwise 1HWO
               "features.2.conv.0.0": (0, 2, 3, 1), "features.17.conv.2": (0, 2, 3, 1), "classifier.1": (0, 1)}
    for layer, axes in layouts.items():
        weight = consts[f"{layer}.weight_quantized"].transpose(axes)
        scales = consts[f"{layer}.weight_scale"].astype(np.float32)
        assert any(q.shape == weight.shape and np.array_equal(q, weight) and np.array_equal(s, scales)
                   for q, s in int8), f"{layer}: edgemb's int8 weights and scales are not in the .tflite"
    # the int8 input is quantized exactly as the QDQ model quantizes it (uint8 zero point - 128)
    scale, zero = Interpreter(model_path=str(ours.path)).get_input_details()[0]["quantization"]
    assert np.float32(scale) == np.float32(consts["input_scale"]) and zero == int(consts["input_zero_point"]) - 128


@pytest.mark.slow
def test_the_artifact_says_which_quantization_it_carries(built):
    _, _, ours, own = built
    assert ours.extra["quantizer"] == "edgemb (the quantize stage's QDQ model)"
    assert own.extra["quantizer"].startswith("ai-edge-quantizer")
    # `edgemb compile` makes the QDQ model for TFLite (and TFLite Micro, Vela, OpenVINO) int8 as a deploy does
    assert all(needs_qdq_model([(b, "int8")]) for b in ("tflite", "tflm", "vela", "openvino"))
    assert not needs_qdq_model([("tflite", "fp32")])


def _node(op: str, inputs: list[str], output: str, **attrs) -> onnx.NodeProto:
    return helper.make_node(op, inputs, [output], f"n_{output}", **attrs)


def test_onnx_module_runs_the_ops_edgembs_graphs_hold_as_onnxruntime_does():
    """CLE's Relu + per-channel Min, SE blocks, detection heads' Transpose/Reshape/Concat, LR-ASPP's Resize."""
    rng = np.random.default_rng(0)
    inits = {"w": rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "b": rng.standard_normal(8).astype(np.float32),
             "dw": rng.standard_normal((8, 1, 3, 3)).astype(np.float32),
             "bound": np.full((1, 8, 1, 1), 2.5, np.float32),
             "lo": np.array(0.0, np.float32), "hi": np.array(6.0, np.float32), "axes": np.array([2, 3], np.int64),
             "shape": np.array([1, -1, 4], np.int64), "sizes": np.array([1, 8, 16, 16], np.int64),
             "fc": rng.standard_normal((5, 8)).astype(np.float32), "flat": np.array([1, 8], np.int64)}
    nodes = [_node("Conv", ["x", "w", "b"], "c", pads=[1, 1, 1, 1], strides=[2, 2]),
             _node("Relu", ["c"], "r"), _node("Min", ["r", "bound"], "m"),
             _node("Conv", ["m", "dw"], "d", pads=[1, 1, 1, 1], group=8), _node("Clip", ["d", "lo", "hi"], "d6"),
             _node("ReduceMean", ["d6", "axes"], "se", keepdims=1), _node("HardSigmoid", ["se"], "g", alpha=1 / 6),
             _node("Mul", ["d6", "g"], "s"), _node("HardSwish", ["s"], "h"),
             _node("Transpose", ["h", ], "t", perm=[0, 2, 3, 1]), _node("Reshape", ["t", "shape"], "boxes"),
             _node("Resize", ["h", "", "", "sizes"], "up", mode="linear", coordinate_transformation_mode="half_pixel"),
             _node("Sigmoid", ["up"], "mask"), _node("ReduceMean", ["h", "axes"], "pool", keepdims=1),
             _node("Reshape", ["pool", "flat"], "v"), _node("Gemm", ["v", "fc"], "logits", transB=1),
             _node("Concat", ["boxes", "boxes"], "both", axis=1)]
    graph = helper.make_graph(nodes, "ops", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("logits", "both",
                                                                                                   "mask")],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    x = rng.standard_normal((1, 3, 16, 16)).astype(np.float32)
    expected = session(model).run(None, {"x": x})
    with torch.no_grad():
        got = OnnxModule(model)(torch.from_numpy(x))
    for want, have in zip(expected, got, strict=True):
        np.testing.assert_allclose(have.numpy(), want, rtol=1e-4, atol=1e-5)
    model.graph.node.append(_node("Einsum", ["logits"], "e", equation="ij->ji"))
    with pytest.raises(EdgembError, match="Einsum"):
        OnnxModule(model)


def test_a_16_bit_rescue_tensor_gets_its_chosen_8_bit_range_in_tflite_int8(tmp_path):
    """The quantize stage raises a sensitive activation to 16 bits over its full observed range; TFLite int8 has
    no 16-bit activations, so it quantizes that tensor to 8 bits again, and must do it over the range the stage
    chose for 8 bits (narrower: it clips outliers to keep resolution), not over the full one. A QDQ model that
    does not record the 8-bit range (made before it did) still reads, with the full range."""
    from edgemb.backends.tflite_qdq import read_qdq
    from edgemb.onnx_graph import Graph
    from edgemb.quant.qdq import QuantConfig, build_qdq

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=(4, 3, 1, 1)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.normal(size=(2, 4, 1, 1)).astype(np.float32), "w2")]
    nodes = [_node("Conv", ["x", "w1"], "c1"), _node("Relu", ["c1"], "a1"), _node("Conv", ["a1", "w2"], "y")]
    graph = Graph(helper.make_model(
        helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])], inits),
        opset_imports=[helper.make_opsetid("", 17)], ir_version=8))
    ranges = {"x": (-3.0, 3.0), "a1": (0.0, 2.0)}
    config = QuantConfig("percentile", "per-channel", "uint8", wide_tensors=["a1"], wide_ranges={"a1": (0.0, 9.0)})
    model = build_qdq(graph, ranges, config)
    path = tmp_path / "qdq.onnx"
    onnx.save(model, str(path))
    qdq = read_qdq(path)
    assert qdq.wide["a1"] == pytest.approx((0.0, 2.0)) and qdq.wide_with_int8_range == ["a1"]
    wide_scale = next(numpy_helper.to_array(t) for t in model.graph.initializer
                      if t.name.startswith("a1") and "scale" in t.name)
    assert float(wide_scale) == pytest.approx(9.0 / 65535)  # the 16-bit pair itself keeps the full range
    model.ClearField("metadata_props")
    onnx.save(model, str(path))
    older = read_qdq(path)
    assert older.wide["a1"] == pytest.approx((0.0, 9.0), abs=1e-6) and older.wide_with_int8_range == []


def test_int8_tflite_keeps_no_buffer_that_nothing_reads(tmp_path):
    """edgemb's integer weights replace the quantizer's in buffers of their own; the replaced ones must not stay
    in the file (they did: 0.9 MB of lraspp_v3l_0.5's 2.15 MB, over the Cortex-M7 board's 2 MB flash)."""
    from ai_edge_litert.tools import flatbuffer_utils

    from edgemb.backends.tflite_qdq import qdq_int8_tflite
    from edgemb.onnx_graph import Graph
    from edgemb.quant.qdq import QuantConfig, build_qdq

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=(64, 3, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.normal(size=(32, 64, 1, 1)).astype(np.float32), "w2")]
    nodes = [_node("Conv", ["x", "w1"], "c1"), _node("Relu", ["c1"], "a1"), _node("Conv", ["a1", "w2"], "y")]
    graph = Graph(helper.make_model(
        helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32, 6, 6])], inits),
        opset_imports=[helper.make_opsetid("", 17)], ir_version=8))
    calibration = rng.normal(size=(16, 3, 8, 8)).astype(np.float32)
    (y,) = run_batched(session(graph.model), calibration)
    path, out = tmp_path / "qdq.onnx", tmp_path / "model.int8.tflite"
    qdq = build_qdq(graph, {"x": (-4.0, 4.0), "a1": (0.0, 16.0)}, QuantConfig("minmax", "per-channel", "uint8"))
    onnx.save(qdq, str(path))
    (y_qdq,) = run_batched(qdq_as_float_session(qdq), calibration)
    qdq_int8_tflite(path, calibration, out, lambda: (float(y.min()), float(y.max())))

    model = flatbuffer_utils.read_model(str(out))
    read = {0} | {t.buffer for t in model.subgraphs[0].tensors} | {m.buffer for m in model.metadata or []}
    unread = [k for k, b in enumerate(model.buffers) if k not in read and b.data is not None and len(b.data)]
    assert unread == []
    weights = 64 * 3 * 3 * 3 + 32 * 64  # int8 bytes: the file is those, biases, scales and the graph
    assert out.stat().st_size < weights + 8 * 1024
    # and the model still computes what the QDQ model computes
    assert sqnr_db(y_qdq, TfliteRunner(out).run(calibration)) > 30
