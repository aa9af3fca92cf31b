"""The quantizer judges every graph output: a detector's scores and boxes, a multi-head model's heads.

The model below has two outputs. `boxes` is a depthwise layer straight off the input, with large values and
little quantization error; `scores` comes through a dense 1x1 conv whose ReLU output has one loud channel, so
per-tensor 8-bit activations crush the other seven and nearly all the error is in that second output. A
ranking or a check that looks at output [0] alone cannot see it (its gains there are exactly 0). The same holds for
the quantize stage's own choices: the range method under `auto` (pick_ranges) and the rewrite gate (gate_rewrite).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgemb.metrics import outputs_sqnr_db, sqnr_db
from edgemb.onnx_graph import Graph, run_batched, session
from edgemb.quant.correction import qdq_session, rank_sensitivity, rank_wide_sensitivity
from edgemb.quant.options import AUTO_METHOD
from edgemb.quant.qdq import QuantConfig, activation_tensors, build_qdq
from edgemb.quant.quantizable import layers
from edgemb.quant.ranges import choose_range, collect_stats
from edgemb.quant.refit import CHECK_SAMPLES, REFIT_SAMPLES, refit_layers
from edgemb.quant.rounding import round_layers
from edgemb.stages.quantize import AUTO_CANDIDATES, gate_rewrite, pick_ranges

CONFIG = QuantConfig("minmax", "per-channel", "uint8")


def _two_heads(outputs: tuple[str, ...] = ("boxes", "scores")) -> onnx.ModelProto:
    """x (2 channels) -> depthwise 3x3 (x1000) -> boxes; x -> 1x1 conv to 8 channels (the last 200x louder)
    -> ReLU -> 1x1 conv to 2 channels (which ignores the loud one) -> scores."""
    rng = np.random.default_rng(0)
    head_a = 1000.0 * rng.uniform(0.5, 1.0, (2, 1, 3, 3))
    head_b0 = rng.standard_normal((8, 2, 1, 1)) * np.array([1, 1, 1, 1, 1, 1, 1, 200.0])[:, None, None, None]
    head_b2 = rng.standard_normal((2, 8, 1, 1)) * np.array([1, 1, 1, 1, 1, 1, 1, 0.0])[None, :, None, None]
    nodes = [helper.make_node("Conv", ["x", "head_a.weight", "head_a.bias"], ["boxes"], "head_a", group=2,
                              pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["x", "head_b.0.weight", "head_b.0.bias"], ["b0"], "head_b0"),
             helper.make_node("Relu", ["b0"], ["b_act"], "relu"),
             helper.make_node("Conv", ["b_act", "head_b.2.weight", "head_b.2.bias"], ["scores"], "head_b2")]
    inits = [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in
             {"head_a.weight": head_a, "head_a.bias": np.zeros(2), "head_b.0.weight": head_b0,
              "head_b.0.bias": np.zeros(8), "head_b.2.weight": head_b2, "head_b.2.bias": np.zeros(2)}.items()]
    graph = helper.make_graph(nodes, "two_heads", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 8, 8])],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 2, 8, 8]) for n in outputs],
                              inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _ranges(graph: Graph, x: np.ndarray) -> dict[str, tuple[float, float]]:
    names = activation_tensors(graph)
    stats = collect_stats(graph.model, x, names, histograms=False)
    return {n: choose_range(stats[n], "minmax") for n in names}


@pytest.fixture(scope="module")
def two_heads() -> tuple[Graph, np.ndarray, dict]:
    graph = Graph(_two_heads())
    x = np.random.default_rng(1).uniform(0, 1, (REFIT_SAMPLES + CHECK_SAMPLES, 2, 8, 8)).astype(np.float32)
    return graph, x, _ranges(graph, x)


def test_outputs_sqnr_weighs_each_output_by_its_own_signal_and_is_sqnr_for_one_output():
    rng = np.random.default_rng(0)
    ref = [rng.standard_normal((16, 10)), rng.standard_normal((16, 4, 3))]
    noisy = [r + s * rng.standard_normal(r.shape) for r, s in zip(ref, (0.001, 0.1), strict=True)]
    assert outputs_sqnr_db(ref[:1], noisy[:1]) == sqnr_db(ref[0], noisy[0])  # bit for bit: classifiers unchanged
    both = outputs_sqnr_db(ref, noisy)
    # one head's scale cannot drown another's: pooling the outputs would read ~60 dB once the clean head is x1000
    loud = [1000 * ref[0], ref[1]], [1000 * noisy[0], noisy[1]]
    assert abs(outputs_sqnr_db(*loud) - both) < 1e-9
    assert 10 * np.log10(sum(np.sum(r**2) for r in loud[0])
                         / sum(np.sum((r - n) ** 2) for r, n in zip(*loud, strict=True))) > 55
    # led by the worst output (20 dB here), yet the clean one still counts: the mean of the relative errors
    # lies between the worst output's SQNR and 10 log10(2) dB above it
    worst = sqnr_db(ref[1], noisy[1])
    assert worst < both < worst + 3.02
    assert outputs_sqnr_db(ref, [ref[0], noisy[1]]) == pytest.approx(worst + 10 * np.log10(2), abs=1e-9)
    assert outputs_sqnr_db(ref, ref) == float("inf")
    assert outputs_sqnr_db([np.zeros(3), ref[1]], [np.ones(3), ref[1]]) == float("-inf")
    with pytest.raises(ValueError):
        outputs_sqnr_db(ref, noisy[:1])


def test_layer_sensitivity_sees_the_second_outputs_error(two_heads):
    graph, x, ranges = two_heads
    ranking = rank_sensitivity(graph, ranges, CONFIG, x)
    gains = {r["layer"]: r["sqnr_gain_db"] for r in ranking}
    assert ranking[0]["layer"].startswith("head_b") and ranking[0]["sqnr_gain_db"] > 10, ranking
    assert gains["head_a"] < 1.0, ranking  # the first output's error is tiny beside the second's


def test_16_bit_sensitivity_sees_the_second_outputs_error(two_heads):
    graph, x, ranges = two_heads
    ranking = rank_wide_sensitivity(graph, ranges, CONFIG, x)
    assert ranking[0]["tensor"] == "b_act" and ranking[0]["sqnr_gain_db"] > 10, ranking


def test_one_output_ranks_exactly_as_its_logits_sqnr(two_heads):
    """A classifier (one output) gets the same numbers as when the rankings read output [0] alone."""
    _, x, _ = two_heads
    graph = Graph(_two_heads(("scores",)))
    ranges = _ranges(graph, x)
    reference = run_batched(session(graph.model), x)[0]
    base = sqnr_db(reference, run_batched(session(build_qdq(graph, ranges, CONFIG)), x)[0])
    expected = {}
    for name, _ in layers(graph):
        trial = QuantConfig("minmax", "per-channel", "uint8", keep_float=[name])
        expected[name] = round(sqnr_db(reference, run_batched(session(build_qdq(graph, ranges, trial)), x)[0])
                               - base, 3)
    assert {r["layer"]: r["sqnr_gain_db"] for r in rank_sensitivity(graph, ranges, CONFIG, x)} == expected


def test_the_refit_check_scores_every_output(two_heads):
    """The refit touches only the second output's dense layers (the first head is depthwise): judged on output
    [0] its two check scores were identical and the refit was always rejected."""
    graph, x, ranges = two_heads
    rounded = round_layers(graph, x, per_channel=True)
    result, gate = refit_layers(graph, ranges, CONFIG, rounded, x)
    assert gate["refitted"] == ["head_b.0", "head_b.2"]
    check = x[REFIT_SAMPLES:REFIT_SAMPLES + CHECK_SAMPLES]
    reference = run_batched(session(graph.model), check)
    unchanged = run_batched(qdq_session(build_qdq(graph, ranges, CONFIG, rounded)), check)
    assert np.array_equal(unchanged[0], run_batched(qdq_session(build_qdq(graph, ranges, CONFIG, result)), check)[0])
    scores = gate["check_sqnr_db"]
    assert scores["without"] == round(outputs_sqnr_db(reference, unchanged), 3)
    assert scores["without"] < sqnr_db(reference[0], unchanged[0]) - 20  # the second output's error counts
    assert scores["with"] > scores["without"] and gate["applied"] and result is not rounded


def _quiet_loud_channel(graph: Graph) -> Graph:
    """The same float function with head_b's loud channel 200x quieter before the ReLU and 200x louder after it
    (ReLU is positively homogeneous; head_b.2 ignores that channel anyway): a rewrite in the second head alone."""
    rewritten = graph.copy()
    down = np.ones(8, np.float32)
    down[7] = 1 / 200
    rewritten.set_array("head_b.0.weight", graph.array("head_b.0.weight") * down[:, None, None, None])
    rewritten.set_array("head_b.0.bias", graph.array("head_b.0.bias") * down)
    rewritten.set_array("head_b.2.weight", graph.array("head_b.2.weight") / down[None, :, None, None])
    return rewritten


def test_the_rewrite_gate_scores_every_output(two_heads):
    """A rewrite that changes only the second head: judged on output [0] both candidates scored the same (the
    first head is bit-identical) and the gate always skipped it; over every output it is kept."""
    graph, x, _ = two_heads
    rewritten = _quiet_loud_channel(graph)
    fit, held_out = x[0::2], x[1::2]
    reference = run_batched(qdq_session(graph.model), held_out)  # the gate's own float run
    assert all(np.allclose(r, o, rtol=1e-4, atol=1e-2) for r, o in
               zip(reference, run_batched(session(rewritten.model), held_out), strict=True))  # same function
    outputs = {}
    for key, candidate in (("without", graph), ("with", rewritten)):  # what the gate builds (minmax, GPTQ)
        model = build_qdq(candidate, _ranges(candidate, fit), CONFIG, round_layers(candidate, fit, True))
        outputs[key] = run_batched(qdq_session(model), held_out)
    assert np.array_equal(outputs["without"][0], outputs["with"][0])  # output [0] alone: a tie, never applied
    gate = gate_rewrite(graph, rewritten, CONFIG, x, "test rewrite", "gptq")
    scores = gate["held_out_sqnr_db"]
    assert scores == {key: round(outputs_sqnr_db(reference, out), 3) for key, out in outputs.items()}
    assert scores["with"] > scores["without"] + 10 and gate["applied"], gate


def _heavy_tailed(n: int = 96) -> np.ndarray:
    return np.random.default_rng(1).laplace(size=(n, 2, 8, 8)).astype(np.float32)


def test_auto_ranges_are_picked_on_every_output():
    """Heavy-tailed inputs: the first output (boxes, fed by the input's range alone) is a little better under
    mse, the second (scores) clearly better under percentile, whose range for the ReLU output is tighter. Output
    [0] alone picked mse; over every output percentile wins."""
    graph = Graph(_two_heads())
    x = _heavy_tailed()
    names = activation_tensors(graph)
    stats = collect_stats(graph.model, x, names, histograms=True)
    config = QuantConfig(AUTO_METHOD, "per-channel", "uint8")
    reference = run_batched(qdq_session(graph.model), x)
    outputs = {m: run_batched(qdq_session(build_qdq(graph, {n: choose_range(stats[n], m) for n in names}, config)),
                              x) for m in AUTO_CANDIDATES}
    first = {m: sqnr_db(reference[0], out[0]) for m, out in outputs.items()}
    assert max(first, key=lambda m: first[m]) == "mse", first  # what output [0] alone chose
    ranges, report = pick_ranges(graph, stats, names, config, None, x)
    expected = {m: round(outputs_sqnr_db(reference, out), 3) for m, out in outputs.items()}
    assert report["calibration_sqnr_db"] == expected
    assert report["method"] == "percentile" and expected["percentile"] > expected["mse"] + 0.5, report
    assert ranges == {n: choose_range(stats[n], "percentile") for n in names}


def test_one_output_picks_ranges_and_gates_rewrites_on_its_logits_sqnr(two_heads):
    """A classifier (one output) gets the same scores as when pick_ranges and gate_rewrite read output [0]."""
    _, x, _ = two_heads
    graph = Graph(_two_heads(("scores",)))
    names = activation_tensors(graph)
    stats = collect_stats(graph.model, _heavy_tailed(), names, histograms=True)
    config = QuantConfig(AUTO_METHOD, "per-channel", "uint8")
    reference = run_batched(qdq_session(graph.model), x)[0]
    _, report = pick_ranges(graph, stats, names, config, None, x)
    assert report["calibration_sqnr_db"] == {m: round(sqnr_db(reference, run_batched(qdq_session(build_qdq(
        graph, {n: choose_range(stats[n], m) for n in names}, config)), x)[0]), 3) for m in AUTO_CANDIDATES}
    rewritten = _quiet_loud_channel(graph)
    fit, held_out = x[0::2], x[1::2]
    reference = run_batched(qdq_session(graph.model), held_out)[0]
    gate = gate_rewrite(graph, rewritten, CONFIG, x, "test rewrite", "nearest")
    assert gate["held_out_sqnr_db"] == {key: round(sqnr_db(reference, run_batched(qdq_session(build_qdq(
        candidate, _ranges(candidate, fit), CONFIG)), held_out)[0]), 3)
        for key, candidate in (("without", graph), ("with", rewritten))}
