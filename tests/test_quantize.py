"""int8 quantization on a trained reference model and real Fashion-MNIST data."""

from __future__ import annotations

import json
import warnings

import numpy as np
import onnx
import pytest

from edgemb import cli
from edgemb.budget import Budget
from edgemb.data import load_data
from edgemb.errors import EdgembError
from edgemb.metrics import sqnr_db
from edgemb.onnx_graph import Graph, run_batched, session
from edgemb.quant.cle import equalize, weight_range_spread
from edgemb.quant.correction import qdq_session
from edgemb.quant.options import QuantizeSettings
from edgemb.quant.qdq import QuantConfig, activation_tensors, build_qdq
from edgemb.quant.ranges import BINS, TensorStats, _expected_error, choose_range, collect_stats
from edgemb.stages.export import export_simplified
from edgemb.stages.quantize import AUTO_CANDIDATES, DEFAULT_MAX_WIDE_TENSORS, best_step, quantize_model
from edgemb.stages.verify import verify_quantized
from edgemb.zoo.prepared import prepare_model

MODEL = "v1_0.25"
CALIB = "fashion-mnist:train:128"
EVAL = "fashion-mnist:test:500"


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """One default (per-channel, auto ranges) quantization shared by several tests."""
    out = tmp_path_factory.mktemp("q") / "default"
    report = quantize_model(MODEL, CALIB, out, weights="ref", eval_spec=EVAL)
    return out, report


def _initializers(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    return {t.name: t for t in model.graph.initializer}


def test_default_quantization_is_accurate_and_really_int8(default_run):
    out, report = default_run
    assert sorted(p.name for p in out.iterdir()) == ["eval.int8.npz", "model.float.onnx", "model.int8.onnx",
                                                     "quantize.json"]
    assert json.loads((out / "quantize.json").read_text()) == report
    assert report["calibration"]["n"] == 128 and report["layers_kept_float"] == []
    assert report["eval"]["drop"] <= 1.0 and report["eval"]["agreement"] >= 0.97
    model = onnx.load(str(out / "model.int8.onnx"))
    inits = _initializers(model)
    convs = [n for n in model.graph.node if n.op_type in ("Conv", "Gemm")]
    assert convs and all(n.input[1].endswith("_dq") for n in convs)
    for node in convs:
        weight = inits[node.input[1][: -len("_dq")] + "_quantized"]
        assert weight.data_type == onnx.TensorProto.INT8
        assert len(inits[node.input[1][: -len("_dq")] + "_scale"].dims) == 1  # one scale per output channel
    activation_zps = [t for name, t in inits.items() if name.endswith("_zero_point") and ".weight" not in name
                      and ".bias" not in name]
    assert activation_zps and all(t.data_type == onnx.TensorProto.UINT8 for t in activation_zps)
    assert not any(t.data_type == onnx.TensorProto.FLOAT and len(t.dims) == 4 for t in inits.values()), \
        "no float conv weights may remain"


def test_calibration_methods_compute_different_ranges():
    rng = np.random.default_rng(0)
    values = rng.exponential(1.0, 200_000)  # a long sparse tail, as after ReLU
    top = float(values.max())
    stats = TensorStats(0.0, top)
    stats.hist, _ = np.histogram(values, bins=BINS, range=(0.0, top))
    ranges = {m: choose_range(stats, m) for m in ("minmax", "percentile", "mse")}
    assert ranges["minmax"][1] == pytest.approx(top)
    assert ranges["percentile"][1] < 0.9 * top and ranges["mse"][1] < top
    assert ranges["percentile"] != ranges["mse"]
    centers = np.linspace(0, top, BINS + 1)[:-1] + top / BINS / 2
    assert _expected_error(centers, stats.hist, *ranges["mse"], "uint8") <= min(
        _expected_error(centers, stats.hist, *ranges[m], "uint8") for m in ("minmax", "percentile"))


@pytest.mark.parametrize("method", ["percentile", "minmax"])
def test_every_method_runs_end_to_end_and_changes_the_model(tmp_path, default_run, method):
    report = quantize_model(MODEL, CALIB, tmp_path / method, weights="ref", settings=QuantizeSettings(method=method),
                            eval_spec=EVAL)
    assert report["settings"]["method"] == method and report["eval"]["agreement"] >= 0.95
    baseline = default_run[0]
    if default_run[1]["ranges"]["method"] == method:  # `auto` chose this very method: compare with the other one
        other = next(m for m in AUTO_CANDIDATES if m != method)
        baseline = tmp_path / other
        quantize_model(MODEL, CALIB, baseline, weights="ref", settings=QuantizeSettings(method=other))
    ours = onnx.load(str(tmp_path / method / "model.int8.onnx"))
    default = onnx.load(str(baseline / "model.int8.onnx"))
    scales = [(a.name, onnx.numpy_helper.to_array(a), onnx.numpy_helper.to_array(b))
              for a, b in zip(ours.graph.initializer, default.graph.initializer, strict=False)
              if a.name == b.name and a.name.endswith("_scale") and ".weight" not in a.name]
    assert any(not np.allclose(x, y) for _, x, y in scales), f"{method} gave the same activation scales as {baseline}"


def test_per_tensor_weights_have_one_scale(tmp_path):
    report = quantize_model(MODEL, CALIB, tmp_path / "pt", weights="ref",
                            settings=QuantizeSettings(granularity="per-tensor"))
    assert report["settings"]["granularity"] == "per-tensor"
    inits = _initializers(onnx.load(str(tmp_path / "pt" / "model.int8.onnx")))
    weight_scales = [t for name, t in inits.items() if name.endswith(".weight_scale")]
    assert weight_scales and all(len(t.dims) == 0 for t in weight_scales)


def test_cle_keeps_the_float_function_and_evens_out_channel_ranges(default_run):
    out, _ = default_run
    graph = Graph.load(out / "model.float.onnx")
    equalized, pairs = equalize(graph)
    assert pairs >= 13
    assert weight_range_spread(equalized) < weight_range_spread(graph)
    assert any(n.op_type == "Min" for n in equalized.graph.node), "ReLU6 must become Relu + per-channel Min"
    x = load_data("fashion-mnist:test:32", prepare_model(MODEL, "ref").preprocessing).x
    before = run_batched(session(graph.model), x)[0]
    after = run_batched(session(equalized.model), x)[0]
    assert np.abs(before - after).max() < 1e-4


def test_cle_and_bias_correction_help_per_tensor(tmp_path):
    # CLE's own effect: activation equalization (on by default, tests/test_quant_act_equalization.py) stays off
    plain = quantize_model(MODEL, CALIB, tmp_path / "a", weights="ref", eval_spec=EVAL,
                           settings=QuantizeSettings(granularity="per-tensor", act_equalization=False))
    fixed = quantize_model(MODEL, CALIB, tmp_path / "b", weights="ref", eval_spec=EVAL,
                           settings=QuantizeSettings(granularity="per-tensor", cle=True, bias_correction=True,
                                                     act_equalization=False))
    assert fixed["cle"]["pairs"] >= 13 and fixed["bias_correction"]["layers"] == fixed["layers"]
    assert fixed["cle"]["applied"] and fixed["eval"]["sqnr_db"] > plain["eval"]["sqnr_db"]


def test_cle_and_bias_correction_never_lower_fidelity_and_keep_per_channel_scales(tmp_path):
    """Per-channel weights are where CLE and bias correction used to hurt (the real V2 lost 14 dB with CLE):
    each is now kept only where calibration samples it was not fitted on say it helps."""
    # the gates of CLE and bias correction themselves: activation equalization (gated on its own) stays off
    plain = quantize_model(MODEL, CALIB, tmp_path / "p", weights="ref", eval_spec=EVAL,
                           settings=QuantizeSettings(act_equalization=False))
    report = quantize_model(MODEL, CALIB, tmp_path / "r", weights="ref", eval_spec=EVAL,
                            settings=QuantizeSettings(cle=True, bias_correction=True, act_equalization=False))
    assert report["eval"]["sqnr_db"] >= plain["eval"]["sqnr_db"] - 0.3
    cle = report["cle"]
    assert cle["reason"] and (cle["applied"] == (cle["held_out_sqnr_db"]["with"] > cle["held_out_sqnr_db"]["without"]))
    for layer in report["bias_correction"]["per_layer"]:
        assert layer["applied"] == (layer["held_out_mse_after"] < layer["held_out_mse_before"]), layer
    inits = _initializers(onnx.load(str(tmp_path / "r" / "model.int8.onnx")))
    scales = [t for name, t in inits.items() if name.endswith(".weight_scale")]
    assert scales and all(len(t.dims) == 1 and t.dims[0] > 1 for t in scales), "granularity lost"


def test_budget_raises_activations_to_16_bit_before_float_and_ships_the_best_step(tmp_path, capsys):
    code = cli.main(["quantize", MODEL, "--weights", "ref", "--calib", CALIB, "--eval", EVAL, "--out",
                     str(tmp_path / "b"), "--min-sqnr", "200", "--max-float-layers", "2"])
    assert code == 1, "an impossible budget must fail with exit 1"
    report = json.loads((tmp_path / "b" / "quantize.json").read_text())
    budget = report["budget"]
    assert "held out" in budget["chosen_on"] and budget["held_out_samples"] == 32
    assert report["calibration"]["fit"] == 96 and report["calibration"]["held_out"] == 32
    steps = budget["steps"]
    wide = [r["tensor"] for r in budget["sensitivity_16bit"] if r["sqnr_gain_db"] > 0][:DEFAULT_MAX_WIDE_TENSORS]
    assert wide and len(steps) == 1 + len(wide) + 2, "every 16-bit step first, then the float layers"
    assert steps[len(wide)]["raised_16bit"] == wide and steps[len(wide)]["kept_float"] == []
    assert steps[-1]["kept_float"] == [r["layer"] for r in budget["sensitivity"]][:2]
    chosen = steps[budget["chosen_step"]]
    assert budget["chosen_step"] == best_step(Budget(None, None, 200.0), steps) and budget["held_out"] == chosen
    assert report["layers_kept_float"] == chosen["kept_float"] and report["activations_16bit"] == chosen["raised_16bit"]
    model = onnx.load(str(tmp_path / "b" / "model.int8.onnx"))
    inits = _initializers(model)
    for tensor in report["activations_16bit"]:
        if f"{tensor}_zero_point" in inits:
            assert inits[f"{tensor}_zero_point"].data_type == onnx.TensorProto.UINT16
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 21
    for layer in report["layers_kept_float"]:
        assert f"{layer}.weight" in inits and f"{layer}.weight_quantized" not in inits
    for layer in report["layers_16bit_input"]:
        assert inits[f"{layer}.weight_quantized"].data_type == onnx.TensorProto.INT8, "16-bit inputs keep int8 weights"
    assert not budget["met"] and "SQNR" in budget["verdict"]
    # the ladder takes the most SQNR per measured millisecond first, and the report says what it cost
    ranking = budget["sensitivity_16bit"]
    ratios = [r["sqnr_gain_db"] / r["cost_ms_model"] for r in ranking]
    assert ratios == sorted(ratios, reverse=True)
    assert len({r["elements"] for r in ranking}) > 1, "tensor sizes differ: the cost model must see them"
    cost, timings = budget["speed_cost"], budget["steps_host_ms"]
    assert len(timings) == len(steps) and all(t > 0 for t in timings)
    assert cost["chosen_ms"] == timings[budget["chosen_step"]] and cost["int8_ms"] == timings[0]
    assert cost["added_ms"] == pytest.approx(cost["chosen_ms"] - cost["int8_ms"], abs=2e-3) and cost["float_ms"] > 0
    printed = capsys.readouterr().out
    assert "rescue cost:" in printed and "raised to 16 bits:" in printed


def test_the_rescue_is_chosen_without_looking_at_the_evaluation_set(tmp_path):
    budget = Budget(None, None, 42.0)
    first = quantize_model(MODEL, CALIB, tmp_path / "a", weights="ref", eval_spec=EVAL, budget=budget)
    other = quantize_model(MODEL, CALIB, tmp_path / "b", weights="ref", eval_spec="fashion-mnist:test:40",
                           budget=budget)
    assert first["activations_16bit"], "the 8-bit model misses 42 dB on held-out calibration samples"
    for key in ("activations_16bit", "layers_kept_float"):
        assert first[key] == other[key]
    assert first["budget"]["steps"] == other["budget"]["steps"]
    assert first["eval"]["n"] == 500 and other["eval"]["n"] == 40


def test_best_step_is_the_best_measured_trade_off_not_the_last():
    budget = Budget(max_drop=0.5, min_agreement=None)
    steps = [{"drop": 2.0, "sqnr_db": 20.0}, {"drop": 0.9, "sqnr_db": 24.0}, {"drop": 1.4, "sqnr_db": 25.0}]
    assert best_step(budget, steps) == 1, "the last attempt was worse than the one before"
    steps.append({"drop": 0.4, "sqnr_db": 22.0})
    steps.append({"drop": 0.4, "sqnr_db": 22.0})
    assert best_step(budget, steps) == 3, "the first step that meets the budget, with the fewest raised layers"
    unlabelled = Budget(max_drop=0.5, min_agreement=0.99)
    steps = [{"n": 10, "n_confident": 5, "agreement": 0.9, "agreement_confident": 0.8, "sqnr_db": 20.0},
             {"n": 10, "n_confident": 5, "agreement": 0.8, "agreement_confident": 1.0, "sqnr_db": 19.0},
             {"n": 10, "n_confident": 5, "agreement": 0.9, "agreement_confident": 0.8, "sqnr_db": 30.0}]
    assert best_step(unlabelled, steps) == 1


def _graph_and_mse_ranges(default_run) -> tuple:
    """The exported float graph (not the default run's, which activation equalization may have rewritten), 64
    test images, its activation tensors and their mse ranges."""
    out, _ = default_run
    graph = Graph.load(export_simplified(prepare_model(MODEL, "ref").model, 64, out.parent / "exported.onnx"))
    x = load_data("fashion-mnist:test:64", prepare_model(MODEL, "ref").preprocessing).x
    names = activation_tensors(graph)
    stats = collect_stats(graph.model, x, names, histograms=True)
    return graph, x, names, {n: choose_range(stats[n], "mse") for n in names}


def test_16_bit_activations_keep_int8_weights_run_and_raise_fidelity(default_run):
    graph, x, names, ranges = _graph_and_mse_ranges(default_run)
    reference = run_batched(session(graph.model), x)[0]
    narrow = build_qdq(graph, ranges, QuantConfig("mse"))
    wide = build_qdq(graph, ranges, QuantConfig("mse", wide_tensors=[n for n in names if n != graph.input_name]))
    inits = _initializers(wide)
    assert inits[f"{names[1]}_zero_point"].data_type == onnx.TensorProto.UINT16
    assert all(t.data_type == onnx.TensorProto.INT8 for n, t in inits.items() if n.endswith(".weight_quantized"))
    gain = sqnr_db(reference, run_batched(session(wide), x)[0]) - sqnr_db(reference, run_batched(session(narrow), x)[0])
    assert gain > 6.0, f"16-bit activations gained only {gain:.1f} dB"


def test_16_bit_activations_use_their_full_range_not_the_clipped_8_bit_one(default_run):
    """The 8-bit ranges clip outliers; a tensor raised to 16 bits must cover its full observed range, else the
    clipping error stays and the rescue buys little (V2@224: 23.9 dB with 8-bit ranges, 33.2 dB with full)."""
    graph, x, names, ranges = _graph_and_mse_ranges(default_run)
    stats = collect_stats(graph.model, x, names, histograms=False)
    full = {n: choose_range(stats[n], "minmax") for n in names}
    clipped_most = max((n for n in names if n != graph.input_name),
                       key=lambda n: (full[n][1] - full[n][0]) / (ranges[n][1] - ranges[n][0]))
    assert full[clipped_most] != ranges[clipped_most], "no mse range clips anything: the test would prove nothing"

    def worst_error(config: QuantConfig) -> tuple[float, float]:
        model = build_qdq(graph, ranges, config)
        scale = float(onnx.numpy_helper.to_array(_initializers(model)[f"{clipped_most}_scale"]))
        _, before, after = run_batched(qdq_session(model, [clipped_most, f"{clipped_most}_dq"]), x)
        return float(np.abs(after - before).max()), scale

    clipped_error, _ = worst_error(QuantConfig("mse", wide_tensors=[clipped_most]))
    covered_error, step = worst_error(QuantConfig("mse", wide_tensors=[clipped_most], wide_ranges=full))
    assert covered_error <= step, f"a 16-bit tensor still clips {covered_error:.3g} (> one step {step:.3g})"
    assert clipped_error > 10 * step, "the 8-bit range did not clip: the test would prove nothing"


def test_verify_reports_parity_and_a_ranked_layer_table(default_run):
    out, report = default_run
    result = verify_quantized(out / "model.int8.onnx", MODEL, EVAL, weights="ref", layer_samples=16)
    assert result["n"] == 500 and result["agreement"] == report["eval"]["agreement"]
    assert {"float_top1", "quant_top1", "drop", "sqnr_db", "cosine"} <= set(result)
    table = result["layers"]
    assert len(table) == report["layers"]
    assert [r["sqnr_db"] for r in table] == sorted(r["sqnr_db"] for r in table)


def test_verify_refuses_another_models_artifact(default_run):
    out, _ = default_run
    with pytest.raises(EdgembError, match="another @resolution"):
        verify_quantized(out / "model.int8.onnx", f"{MODEL}@96", EVAL, weights="ref")
    with pytest.raises(EdgembError, match="quantized weights have other names or shapes"):
        verify_quantized(out / "model.int8.onnx", "v2_0.35", EVAL, weights="ref")


def test_bad_calibration_inputs(tmp_path):
    pp = prepare_model(MODEL, "ref").preprocessing
    x = np.random.default_rng(0).standard_normal((8, 3, pp.resolution, pp.resolution)).astype(np.float32)
    x[3, 0, 0, 0] = np.inf
    np.savez(tmp_path / "nan.npz", x=x)
    with pytest.raises(EdgembError, match="sample 3 contains NaN or inf"):
        quantize_model(MODEL, f"npz:{tmp_path / 'nan.npz'}", tmp_path / "o", weights="ref")
    assert not (tmp_path / "o").exists()
    np.savez(tmp_path / "zeros.npz", x=np.zeros((8, 3, pp.resolution, pp.resolution), np.float32))
    with pytest.warns(UserWarning, match="8 of 8 calibration images are constant"):
        quantize_model(MODEL, f"npz:{tmp_path / 'zeros.npz'}", tmp_path / "z", weights="ref")
    with pytest.raises(EdgembError, match="needs --eval"):
        quantize_model(MODEL, CALIB, tmp_path / "m", weights="ref", budget=Budget(max_drop=0.5))
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("option,message", [
    ({"method": "best"}, "--method 'best' is not one of auto, minmax, percentile, mse"),
    ({"weight_rounding": "adaround"}, "--weight-rounding 'adaround' is not one of gptq, nearest"),
    ({"granularity": "per-group"}, "--granularity 'per-group' is not one of per-channel, per-tensor"),
    ({"activation_type": "int16"}, "--activation-type 'int16' is not one of uint8, int8"),
    ({"max_float_layers": -1}, "--max-float-layers must be >= 0, got -1"),
])
def test_settings_refuse_what_the_stage_does_not_offer(option, message):
    with pytest.raises(EdgembError) as caught:
        QuantizeSettings(**option)
    assert str(caught.value) == message


def test_settings_cannot_change_after_they_are_checked():
    import dataclasses

    settings = QuantizeSettings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.max_float_layers = -1


def test_fewer_calibration_samples_than_asked_warns(tmp_path):
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((28, 28), 40 * i + 10, np.uint8)).save(folder / f"{i}.png")
    (folder / "bad.png").write_bytes(b"not a png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quantize_model(MODEL, f"imagefolder:{folder}:4", tmp_path / "o", weights="ref")
    assert any("fewer than the 4 asked" in str(w.message) for w in caught)


def test_cli_quantize_and_verify_exit_codes(tmp_path, default_run, capsys):
    assert cli.main(["quantize", MODEL, "--weights", "ref", "--calib", CALIB, "--out", str(tmp_path / "o"),
                     "--max-drop", "1"]) == 2
    assert "needs --eval" in capsys.readouterr().err
    out, _ = default_run
    assert cli.main(["verify", str(out / "model.int8.onnx"), "--model", MODEL, "--weights", "ref", "--data",
                     "fashion-mnist:test:50", "--layer-samples", "8"]) == 0
    printed = capsys.readouterr().out
    assert "agreement" in printed and "worst layers" in printed


def test_rescue_choice_uses_the_held_out_point_estimate_and_leaves_the_interval_to_the_evaluation():
    """75 held-out crops give an interval that straddles any useful budget: the rescue ladder stops on the
    point estimate there, while the evaluation verdict still needs the whole interval under the budget."""
    from edgemb.budget import Budget
    from edgemb.stages.quantize import meets_on_held_out

    straddling = {"n": 75, "agreement": 0.95, "sqnr_db": 22.0, "est_drop": 0.3, "est_drop_low": -1.0,
                  "est_drop_high": 1.6}
    assert meets_on_held_out(Budget(max_drop=0.5), straddling)
    assert not Budget(max_drop=0.5).met(straddling)
    assert not meets_on_held_out(Budget(max_drop=0.5), {**straddling, "est_drop": 0.6})
    assert not meets_on_held_out(Budget(max_drop=0.5), {"n": 75, "drop": 0.7, "agreement": 0.9, "sqnr_db": 20.0})


def test_openvino_int8_from_a_qdq_model_with_16_bit_activations_keeps_its_accuracy(default_run, tmp_path):
    """OpenVINO's ONNX reader ruins 16-bit QDQ pairs: the backend keeps those tensors float and stays faithful."""
    from edgemb.backends.openvino_backend import OpenVinoRunner, without_16bit_qdq

    graph, x, names, ranges = _graph_and_mse_ranges(default_run)
    raised = names[1:4]
    onnx.save(build_qdq(graph, ranges, QuantConfig("mse", wide_tensors=raised)), str(tmp_path / "wide.onnx"))
    assert without_16bit_qdq(tmp_path / "wide.onnx", tmp_path / "stripped.onnx") == sorted(raised)
    import openvino as ov

    ov.save_model(ov.convert_model(str(tmp_path / "stripped.onnx")), str(tmp_path / "m.xml"), compress_to_fp16=False)
    reference = run_batched(session(graph.model), x)[0]
    assert sqnr_db(reference, OpenVinoRunner(tmp_path / "m.xml").run(x)) > 20.0


def test_rescue_choice_on_labelled_held_out_samples_uses_the_estimate_not_label_flips():
    """One flipped label among 128 held-out images is a 0.78-point drop; the float model's probabilities say the
    int8 model lost 0.05: no rescue (the v2_1.0 reference once paid 2x onnxruntime time for such a flip)."""
    from edgemb.budget import Budget
    from edgemb.stages.quantize import meets_on_held_out

    one_flip = {"n": 128, "drop": 0.78, "agreement": 0.992, "sqnr_db": 38.0, "est_drop": 0.05,
                "est_drop_low": -0.8, "est_drop_high": 0.8}
    assert meets_on_held_out(Budget(max_drop=0.5), one_flip)
    assert not Budget(max_drop=0.5).met(one_flip), "the evaluation verdict still judges the labels"
    assert not meets_on_held_out(Budget(max_drop=0.5), {**one_flip, "drop": 0.0, "est_drop": 0.7})
    steps = [{**one_flip, "drop": 0.0, "est_drop": 0.7}, {**one_flip, "est_drop": 0.3, "sqnr_db": 40.0}]
    assert best_step(Budget(max_drop=0.5), steps) == 1, "ranked by the estimate, not the labels"


def test_rescue_choice_keeps_labels_that_clearly_miss_and_undecided_estimates():
    """The estimate replaces labels only within one flip of the budget; an undecided [0, 100] estimate (a
    detector with nothing to compare) is never a pass."""
    from edgemb.budget import Budget
    from edgemb.stages.quantize import meets_on_held_out

    large = {"n": 2000, "drop": 3.0, "agreement": 0.9, "sqnr_db": 20.0, "est_drop": 0.4, "est_drop_low": 0.1,
             "est_drop_high": 0.7}
    assert not meets_on_held_out(Budget(max_drop=0.5), large), "3 points lost on 2,000 labels is no noise"
    assert meets_on_held_out(Budget(max_drop=0.5), {**large, "drop": 0.54}), "within one flip (0.05): estimate"
    undecided = {"n": 40, "agreement": 0.0, "sqnr_db": 15.0, "est_drop": 0.0, "est_drop_low": 0.0,
                 "est_drop_high": 100.0}
    assert not meets_on_held_out(Budget(max_drop=0.5), undecided)
