"""Activation equalization: quiet channels scaled up into the tensor's range, the float function kept."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgemb.data import load_data
from edgemb.onnx_graph import Graph, run_batched, session
from edgemb.quant.act_equalization import (
    MAX_SCALE,
    channel_extremes,
    channel_peaks,
    equalize_activations,
    find_streams,
)
from edgemb.quant.cle import find_pairs
from edgemb.quant.options import QuantizeSettings
from edgemb.quant.qdq import QuantConfig, activation_tensors, build_qdq
from edgemb.quant.ranges import choose_range, collect_stats
from edgemb.stages.export import export_simplified
from edgemb.stages.quantize import quantize_model
from edgemb.zoo.prepared import prepare_model


def _conv_relu6_depthwise(quiet_gain: float) -> onnx.ModelProto:
    """x (1 channel) -> 1x1 conv to 2 channels (gains 1 and quiet_gain) -> ReLU6 -> 3x3 depthwise -> y."""
    first = np.array([1.0, quiet_gain], np.float32).reshape(2, 1, 1, 1)
    depthwise = np.random.default_rng(0).uniform(0.5, 1.0, (2, 1, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], "conv1"),
             helper.make_node("Clip", ["c1", "lo", "hi"], ["a1"], "relu6"),
             helper.make_node("Conv", ["a1", "w2", "b2"], ["y"], "dw", group=2, pads=[1, 1, 1, 1])]
    inits = [numpy_helper.from_array(first, "w1"), numpy_helper.from_array(np.zeros(2, np.float32), "b1"),
             numpy_helper.from_array(np.float32(0.0), "lo"), numpy_helper.from_array(np.float32(6.0), "hi"),
             numpy_helper.from_array(depthwise, "w2"), numpy_helper.from_array(np.zeros(2, np.float32), "b2")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 8, 8])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _quantized_channel_errors(g: Graph, x: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Relative output error per channel of the int8 model (minmax ranges, plain rounding), run as float."""
    from edgemb.quant.correction import qdq_session

    names = activation_tensors(g)
    stats = collect_stats(g.model, x, names, histograms=False)
    ranges = {n: choose_range(stats[n], "minmax") for n in names}
    out = run_batched(qdq_session(build_qdq(g, ranges, QuantConfig("minmax", "per-channel", "uint8"))), x)[0]
    return np.sqrt(((out - reference) ** 2).mean(axis=(0, 2, 3)) / (reference ** 2).mean(axis=(0, 2, 3)))


def test_a_quiet_channel_gets_the_tensors_levels_and_its_error_falls():
    """Channel 1 peaks at 0.06 beside channel 0's 6: per-tensor uint8 gives it about 2 levels. Scaled up, its
    relative error after the depthwise layer falls tenfold; the loud channel is not touched."""
    x = np.random.default_rng(1).uniform(0, 6, (32, 1, 8, 8)).astype(np.float32)
    graph = Graph(_conv_relu6_depthwise(quiet_gain=0.01))
    reference = run_batched(session(graph.model), x)[0]
    equalized, done = equalize_activations(graph, x)
    assert np.abs(run_batched(session(equalized.model), x)[0] - reference).max() < 1e-5  # same float function
    assert done["tensors_scaled"] == 1 and done["per_tensor"]["a1"]["channels_scaled"] == 1
    assert done["per_tensor"]["a1"]["consumer"] == "depthwise"
    before = _quantized_channel_errors(graph, x, reference)
    after = _quantized_channel_errors(equalized, x, reference)
    assert after[1] < before[1] / 10
    assert abs(after[0] - before[0]) < 1e-3


def test_scales_are_capped_and_dead_channels_left_alone():
    x = np.random.default_rng(2).uniform(0, 6, (8, 1, 8, 8)).astype(np.float32)
    tiny, _ = equalize_activations(Graph(_conv_relu6_depthwise(quiet_gain=1e-5)), x)
    assert np.isclose(tiny.array("w1")[1].item() / 1e-5, MAX_SCALE, rtol=1e-4)
    dead, done = equalize_activations(Graph(_conv_relu6_depthwise(quiet_gain=-1.0)), x)  # ReLU zeroes it
    assert done["tensors_scaled"] == 0 and np.array_equal(dead.array("w1"), np.array([1.0, -1.0]).reshape(2, 1, 1, 1))


def test_on_a_real_model_calibration_outputs_stay_and_channel_peaks_only_rise(tmp_path):
    prepared = prepare_model("v2_0.35", "ref")
    graph = Graph.load(export_simplified(prepared.model, prepared.spec.resolution, tmp_path / "m.onnx"))
    x = load_data("fashion-mnist:train:32", prepared.preprocessing).x
    equalized, done = equalize_activations(graph, x)
    assert done["links"] >= 17 and done["tensors_scaled"] >= 1
    before, after = (run_batched(session(g.model), x)[0] for g in (graph, equalized))
    assert np.abs(before - after).max() <= 1e-4 * np.abs(before).max()
    tensors = [(p.bound or p.activation or p.first).output[0] for p in find_pairs(graph)]
    peaks_before, peaks_after = channel_peaks(graph, tensors, x), channel_peaks(equalized, tensors, x)
    for t in tensors:
        assert np.all(peaks_after[t] >= peaks_before[t] * (1 - 1e-5))  # only scaled up
        assert peaks_after[t].max() <= peaks_before[t].max() * (1 + 1e-5)  # the tensor's range stays


def test_quantize_checks_the_equalization_and_can_be_told_not_to(tmp_path):
    on = quantize_model("v2_0.35", "fashion-mnist:train:96", tmp_path / "on", weights="ref",
                        settings=QuantizeSettings(refit=False))
    check = on["act_equalization"]["check"]
    assert on["act_equalization"]["applied"] == (check["held_out_sqnr_db"]["with"]
                                                 > check["held_out_sqnr_db"]["without"])
    assert check["weight_rounding"] == "gptq" and "activation equalization" in on["step_seconds"]
    off = quantize_model("v2_0.35", "fashion-mnist:train:96", tmp_path / "off", weights="ref",
                         settings=QuantizeSettings(refit=False, act_equalization=False))
    assert "act_equalization" not in off and off["settings"]["act_equalization"] is False


def test_equalization_lifts_per_tensor_int8_on_a_reference_model(tmp_path):
    """v1_0.25 per-tensor on Fashion-MNIST: 30.6 dB without, 36.3 dB with, when this test was written."""
    options = {"weights": "ref", "eval_spec": "fashion-mnist:test:500"}
    without = quantize_model("v1_0.25", "fashion-mnist:train:128", tmp_path / "a", **options,
                             settings=QuantizeSettings(granularity="per-tensor", act_equalization=False))
    with_it = quantize_model("v1_0.25", "fashion-mnist:train:128", tmp_path / "b", **options,
                             settings=QuantizeSettings(granularity="per-tensor"))
    assert with_it["act_equalization"]["applied"]
    assert with_it["eval"]["sqnr_db"] > without["eval"]["sqnr_db"] + 3


def _residual_stream(quiet_gain: float, tap: str = "") -> onnx.ModelProto:
    """x (1 channel) -> conv p0 (gains 1 and quiet_gain) = t0; t0 -> conv e1 -> ReLU -> conv p1 = r1;
    t1 = t0 + r1 -> conv head -> y. With `tap`, t1 is also multiplied by itself into a second output."""
    rng = np.random.default_rng(3)
    p0 = np.array([1.0, quiet_gain], np.float32).reshape(2, 1, 1, 1)
    e1, head = (rng.uniform(0.5, 1.0, (2, 2, 1, 1)).astype(np.float32) for _ in range(2))
    p1 = (np.diag([0.5, quiet_gain * 0.5]) @ rng.uniform(0.5, 1.0, (2, 2))).astype(np.float32).reshape(2, 2, 1, 1)
    nodes = [helper.make_node("Conv", ["x", "p0"], ["t0"], "conv_p0"),
             helper.make_node("Conv", ["t0", "e1"], ["h1"], "conv_e1"),
             helper.make_node("Relu", ["h1"], ["a1"], "relu"),
             helper.make_node("Conv", ["a1", "p1"], ["r1"], "conv_p1"),
             helper.make_node("Add", ["t0", "r1"], ["t1"], "add"),
             helper.make_node("Conv", ["t1", "head"], ["y"], "conv_head")]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 8, 8])]
    if tap:
        nodes.append(helper.make_node("Mul", ["t1", "t1"], [tap], "tap"))
        outputs.append(helper.make_tensor_value_info(tap, TensorProto.FLOAT, [1, 2, 8, 8]))
    inits = [numpy_helper.from_array(w, n) for w, n in ((p0, "p0"), (e1, "e1"), (p1, "p1"), (head, "head"))]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
                              outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _assert_each_tensor_keeps_its_range(graph: Graph, equalized: Graph, tensors: list[str], x: np.ndarray) -> None:
    before, after = channel_extremes(graph, tensors, x), channel_extremes(equalized, tensors, x)
    for t in tensors:  # both ends of the tensor's (asymmetric, 8-bit) range stay where they were
        assert after[t][0].min() >= before[t][0].min() * (1 + 1e-5) - 1e-7, t
        assert after[t][1].max() <= before[t][1].max() * (1 + 1e-5) + 1e-7, t


def test_a_residual_stream_is_scaled_as_one_and_its_sum_stays_exact():
    """The quiet channel of t0, r1 and t1 is raised by one shared scale: both convolutions writing the stream
    multiply it, both reading it divide it, so the Add still sums like channels and the float function stays."""
    x = np.random.default_rng(4).uniform(0, 6, (32, 1, 8, 8)).astype(np.float32)
    graph = Graph(_residual_stream(quiet_gain=0.01))
    (stream,) = find_streams(graph)
    assert stream.tensors == ["t0", "r1", "t1"]
    assert {n.name for n in stream.producers} == {"conv_p0", "conv_p1"}
    assert {n.name for n in stream.consumers} == {"conv_e1", "conv_head"}
    equalized, done = equalize_activations(graph, x)
    reference = run_batched(session(graph.model), x)[0]
    assert np.abs(run_batched(session(equalized.model), x)[0] - reference).max() < 1e-4 * np.abs(reference).max()
    record = done["per_tensor"]["t1"]
    assert record["consumer"] == "residual stream" and record["channels_scaled"] == 1
    scale = equalized.array("p0")[1].item() / graph.array("p0")[1].item()
    assert scale > 4  # sqrt of the ~65x the quiet channel could take, dense readers share it
    ratio = equalized.array("p1") / graph.array("p1")  # its input channels also belong to the e1 -> p1 link
    assert np.allclose(ratio[1] / ratio[0], scale, rtol=1e-4)
    assert np.allclose(graph.array("head")[:, 1] / equalized.array("head")[:, 1], scale, rtol=1e-4)
    _assert_each_tensor_keeps_its_range(graph, equalized, stream.tensors, x)
    _, off = equalize_activations(graph, x, streams=False)
    assert "t1" not in off["per_tensor"] and off["streams"] == 0


def test_a_stream_read_by_anything_but_a_convolution_is_left_alone():
    graph = Graph(_residual_stream(quiet_gain=0.01, tap="squared"))
    assert find_streams(graph) == []


def test_a_quiet_negative_channel_is_not_pushed_past_the_tensors_small_negative_end():
    """A linear stream is quantized over [min, max] of the whole tensor. Its quiet channel here is negative
    (-0.06 at most) in a tensor whose other channel reaches +6: scaling by |peak| alone would take it far below
    the tensor's minimum and widen the 8-bit range; the signed bound keeps both ends."""
    x = np.random.default_rng(5).uniform(0, 6, (32, 1, 8, 8)).astype(np.float32)
    graph = Graph(_residual_stream(quiet_gain=-0.01))
    (stream,) = find_streams(graph)
    equalized, _ = equalize_activations(graph, x)
    _assert_each_tensor_keeps_its_range(graph, equalized, stream.tensors, x)


def test_convolutions_whose_channels_do_not_map_one_to_one_are_not_rescaled():
    """A depthwise convolution with two filters per channel (weight 4x1x3x3, group 2) reads channel c with filters
    2c and 2c+1: a per-channel division shaped for one filter per channel would not even broadcast. Such a reader
    takes no link, and a graph whose link it would be comes back unchanged."""
    rng = np.random.default_rng(6)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], "conv1"),
             helper.make_node("Relu", ["c1"], ["a1"], "relu"),
             helper.make_node("Conv", ["a1", "w2"], ["y"], "dw_x2", group=2, pads=[1, 1, 1, 1])]
    inits = [numpy_helper.from_array(np.array([1.0, 0.01], np.float32).reshape(2, 1, 1, 1), "w1"),
             numpy_helper.from_array(rng.uniform(0.5, 1, (4, 1, 3, 3)).astype(np.float32), "w2")]
    model = helper.make_model(
        helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], inits),
        opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    graph = Graph(model)
    assert find_pairs(graph) == []
    x = rng.uniform(0, 6, (8, 1, 8, 8)).astype(np.float32)
    equalized, done = equalize_activations(graph, x)
    assert done["tensors_scaled"] == 0 and np.array_equal(equalized.array("w2"), graph.array("w2"))


def test_a_stream_that_is_a_second_graph_output_is_left_alone():
    """A detector-like graph exposes the stream's sum as its second output: scaling it would change what the
    graph returns, so the stream is not one to equalize."""
    model = _residual_stream(quiet_gain=0.01)
    model.graph.output.append(helper.make_tensor_value_info("t1", TensorProto.FLOAT, [1, 2, 8, 8]))
    assert find_streams(Graph(model)) == []
