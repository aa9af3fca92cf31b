"""Refitting a layer to the int8 model's own (quantized) inputs: it must undo what the input error lets it."""

from __future__ import annotations

import numpy as np
import torch
from onnx import helper

from edgemb.quant.refit import CrossMoments, refit_layer
from edgemb.quant.rounding import InputStats, round_layer


def _output_error(w: np.ndarray, layer, f: np.ndarray, q: np.ndarray) -> float:
    """Mean squared error of the int8 layer on quantized inputs against the float layer on float inputs."""
    wq = layer.q.reshape(len(w), -1).astype(np.float64) * layer.scales[:, None]
    return float(np.mean((f @ w.T - (q @ wq.T + layer.bias_delta)) ** 2))


def test_refit_undoes_input_clipping_that_float_rounding_cannot():
    rng = np.random.default_rng(0)
    d, out, n = 32, 16, 20_000
    mix = rng.standard_normal((d, d)) / np.sqrt(d)
    f = np.maximum(rng.standard_normal((n, d)) @ mix + 0.5, 0.0)  # correlated ReLU-like inputs
    step = np.percentile(f, 95) / 255  # a clipping range: the top 5% saturate
    q = np.clip(np.round(f / step), 0, 255) * step
    w = rng.standard_normal((out, d)).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[1, 1])
    weight = w.reshape(out, d, 1, 1)
    fit, held = slice(0, n // 2), slice(n // 2, n)

    stats = InputStats()
    stats.add(torch.from_numpy(f[fit][None]))
    gptq = round_layer(weight, node, stats, per_channel=True)
    moments = CrossMoments()
    moments.add(torch.from_numpy(q[fit][None]), torch.from_numpy(f[fit][None]))
    refitted = refit_layer(weight, node, moments, qmax=127)

    before = _output_error(w, gptq, f[held], q[held])
    after = _output_error(w, refitted, f[held], q[held])
    assert after < 0.9 * before, (before, after)  # on samples the fit never saw (measured: 0.53 -> 0.42)


def test_refit_skips_what_it_cannot_refit_and_says_why(tmp_path):
    """The refit is on by default; per-tensor or nearest-rounded weights are left alone, and the report says so."""
    from edgemb.quant.options import QuantizeSettings
    from edgemb.stages.quantize import quantize_model

    for option in ({"granularity": "per-tensor"}, {"weight_rounding": "nearest"}):
        report = quantize_model("v1_0.25", "fashion-mnist:train:8", tmp_path / str(option), weights="ref",
                                settings=QuantizeSettings(**option))
        assert report["settings"]["refit"] is True
        assert report["refit"]["applied"] is False and "per-channel" in report["refit"]["reason"]


def test_quantize_refits_dense_layers_and_reports_them(tmp_path):
    from edgemb.quant.options import QuantizeSettings
    from edgemb.stages.quantize import quantize_model

    calib = "fashion-mnist:train:96"  # 64 to fit on, 32 to check the refit on
    plain = quantize_model("v1_0.25", calib, tmp_path / "plain", weights="ref", eval_spec="fashion-mnist:test:100",
                           settings=QuantizeSettings(refit=False))
    report = quantize_model("v1_0.25", calib, tmp_path / "refit", weights="ref", eval_spec="fashion-mnist:test:100")
    refit = report["refit"]
    assert report["settings"]["refit"] is True and refit["samples"] == 64 and refit["check_samples"] == 32
    assert refit["refitted"] and all(n.startswith("features.") for n in refit["refitted"])
    assert not any(n.startswith("classifier") for n in refit["refitted"])  # dense Gemm: too few rows
    scores = refit["check_sqnr_db"]
    assert refit["applied"] == (scores["with"] > scores["without"])
    if refit["applied"]:  # the refitted weights are really used: the int8 model differs from the plain one
        assert report["eval"]["sqnr_db"] != plain["eval"]["sqnr_db"]
    else:  # rejected: exactly the plain model
        assert report["eval"]["sqnr_db"] == plain["eval"]["sqnr_db"]


def test_quantizing_leaves_autograd_on_for_whatever_runs_next(tmp_path):
    """Calibration once switched autograd off globally, and a training run later in the same process failed."""
    from edgemb.quant.options import QuantizeSettings
    from edgemb.stages.quantize import quantize_model

    assert torch.is_grad_enabled()
    quantize_model("v1_0.25", "fashion-mnist:train:96", tmp_path / "q", weights="ref",
                   settings=QuantizeSettings(refit=True))
    assert torch.is_grad_enabled()
