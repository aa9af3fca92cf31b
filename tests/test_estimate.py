"""The label-free estimated drop: its interval must cover the true drop where labels exist."""

from __future__ import annotations

import numpy as np
import pytest

from edgemb.metrics import estimated_drop, parity, softmax


def _draw_labels(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return (probs.cumsum(1) > rng.random((len(probs), 1))).argmax(1)


def test_interval_covers_the_true_drop_when_labels_follow_the_float_probabilities():
    """Labels drawn from a calibrated float model: the 95% interval covers each draw's true drop about 95% of
    the time, while a bootstrap of the mean alone (which ignores which label a sample carries) rarely does."""
    rng = np.random.default_rng(3)
    trials, ours, plain = 120, 0, 0
    for t in range(trials):
        f = rng.normal(size=(1500, 10)) * 2.5
        q = f + rng.normal(size=f.shape) * 0.4
        probs = softmax(f)
        labels = _draw_labels(probs, rng)
        truth = 100.0 * (np.mean(f.argmax(1) == labels) - np.mean(q.argmax(1) == labels))
        est = estimated_drop(f, q, draws=400, seed=t)
        ours += est["est_drop_low"] <= truth <= est["est_drop_high"]
        rows = np.arange(len(f))
        values = 100.0 * (probs[rows, f.argmax(1)] - probs[rows, q.argmax(1)])
        means = [values[rng.integers(0, len(values), len(values))].mean() for _ in range(200)]
        plain += np.percentile(means, 2.5) <= truth <= np.percentile(means, 97.5)
    assert ours / trials >= 0.88, f"interval covered the true drop in only {ours}/{trials} trials"
    assert plain / trials <= 0.6, "the contrast is gone: a plain bootstrap should be far too narrow here"


def test_estimate_is_the_mean_probability_gap_and_zero_when_predictions_agree():
    f = np.log(np.array([[0.7, 0.2, 0.1], [0.5, 0.4, 0.1], [0.1, 0.1, 0.8], [0.3, 0.6, 0.1]]))
    q = f.copy()
    same = estimated_drop(f, q)
    assert same["est_drop"] == 0 and same["est_drop_low"] == 0 and same["est_drop_high"] == 0
    q[1] = np.log([0.4, 0.5, 0.1])  # int8 picks class 1 where float (p=0.5) picked 0 (p of class 1: 0.4)
    est = estimated_drop(f, q)
    assert est["est_drop"] == pytest.approx(100 * (0.5 - 0.4) / 4)
    assert est["n_disagree"] == 1 and est["est_drop_low"] < 0 < est["est_drop_high"]
    assert {"est_drop", "est_drop_low", "est_drop_high"} <= set(parity(f, q, None))


@pytest.mark.slow
def test_fashion_mnist_reference_true_drop_is_inside_the_interval(tmp_path):
    """The issue's case: V2 1.0 reference, 10,000 labelled test images; a plain bootstrap excluded the truth."""
    from edgemb.data import load_data
    from edgemb.onnx_graph import run_batched, session
    from edgemb.stages.quantize import quantize_model
    from edgemb.zoo.inference import predict
    from edgemb.zoo.prepared import prepare_model

    prepared = prepare_model("v2_1.0", "ref")
    test = load_data("fashion-mnist:test", prepared.preprocessing)
    quantize_model(prepared, "fashion-mnist:train:512", tmp_path / "q")
    f = predict(prepared.model, test.x)
    q = run_batched(session(tmp_path / "q" / "model.int8.onnx"), test.x)[0]
    result = parity(f, q, test.y)
    assert result["est_drop_low"] <= result["drop"] <= result["est_drop_high"], result
