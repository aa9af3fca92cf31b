"""How far to trust the label-free estimated drop: estimate and interval beside the true drop, where labels exist.

Run by `make estimate-table`; writes results/estimate.json, rendered into the README (`make readme`).
- Every Fashion-MNIST reference model, quantized by edgemb's default quantizer on fashion-mnist:train:512 and
  evaluated on all 10,000 labelled test images: the true top-1 drop, the estimate with its 95% interval, and,
  for contrast, the interval of a plain bootstrap of the mean (samples resampled, labels not drawn).
- A labelled synthetic set: labels drawn from the float model's own probabilities (the estimator's assumption
  holds exactly), 200 draws; how often each interval covered that draw's true drop.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgemb.artifacts import write_json
from edgemb.data import load_data
from edgemb.metrics import estimated_drop, softmax
from edgemb.onnx_graph import run_batched, session
from edgemb.stages.quantize import quantize_model
from edgemb.zoo.inference import predict
from edgemb.zoo.prepared import prepare_model
from edgemb.zoo.weights.catalog import reference_entries
from provenance import measured_on, stamp_rows

CALIB, EVAL = "fashion-mnist:train:512", "fashion-mnist:test"
OUT = Path(__file__).resolve().parent.parent / "results" / "estimate.json"
SYNTHETIC_MODEL, SYNTHETIC_DRAWS = "v2_1.0", 200


def plain_bootstrap(float_logits: np.ndarray, quant_logits: np.ndarray, draws: int = 2000) -> tuple[float, float]:
    """95% interval of the mean of p_float(float's class) - p_float(int8's class), samples resampled only."""
    probs = softmax(float_logits)
    rows = np.arange(len(probs))
    values = 100.0 * (probs[rows, float_logits.argmax(1)] - probs[rows, quant_logits.argmax(1)])
    rng = np.random.default_rng(0)
    means = [values[rng.integers(0, len(values), len(values))].mean() for _ in range(draws)]
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def measure(name: str, scratch: Path) -> tuple[dict, np.ndarray, np.ndarray]:
    """One reference model: true drop vs estimate on the labelled test set."""
    prepared = prepare_model(name, "ref")
    evaluation = load_data(EVAL, prepared.preprocessing)
    report = quantize_model(prepared, CALIB, scratch / name)
    float_logits = predict(prepared.model, evaluation.x)
    quant_logits = run_batched(session(scratch / name / "model.int8.onnx"), evaluation.x, desc="int8")[0]
    true_drop = 100.0 * float(np.mean(float_logits.argmax(1) == evaluation.y)
                              - np.mean(quant_logits.argmax(1) == evaluation.y))
    est = estimated_drop(float_logits, quant_logits)
    low, high = plain_bootstrap(float_logits, quant_logits)
    row = {"model": name, "data": EVAL, "n": len(evaluation), "quantizer": report["settings"]["method"],
           "true_drop": round(float(true_drop), 3), **est, "plain_low": round(low, 4), "plain_high": round(high, 4),
           "covered": bool(est["est_drop_low"] <= true_drop <= est["est_drop_high"]),
           "plain_covered": bool(low <= true_drop <= high)}
    print(json.dumps(row), flush=True)
    return row, float_logits, quant_logits


def synthetic(float_logits: np.ndarray, quant_logits: np.ndarray) -> dict:
    """Coverage when labels are drawn from the float model's probabilities, SYNTHETIC_DRAWS times."""
    probs = softmax(float_logits)
    rng = np.random.default_rng(1)
    ours = plain = 0
    low, high = plain_bootstrap(float_logits, quant_logits, draws=500)
    for draw in range(SYNTHETIC_DRAWS):
        labels = (probs.cumsum(1) > rng.random((len(probs), 1))).argmax(1)
        truth = 100.0 * (np.mean(float_logits.argmax(1) == labels) - np.mean(quant_logits.argmax(1) == labels))
        est = estimated_drop(float_logits, quant_logits, draws=500, seed=draw)
        ours += est["est_drop_low"] <= truth <= est["est_drop_high"]
        plain += low <= truth <= high
    return {"model": SYNTHETIC_MODEL, "data": f"{EVAL} images, labels drawn from the float model's probabilities",
            "draws": SYNTHETIC_DRAWS, "coverage": ours / SYNTHETIC_DRAWS, "plain_coverage": plain / SYNTHETIC_DRAWS}


def main(models: list[str]) -> None:
    rows, synth = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for name in models or list(reference_entries("classification")):
            row, f, q = measure(name, Path(tmp))
            rows.append(row)
            if name == SYNTHETIC_MODEL:
                synth = synthetic(f, q)
                print(json.dumps(synth), flush=True)
    stamp = measured_on()
    write_json(OUT, {"commit": stamp["commit"], "cpu": {"model": stamp["cpu"], "isa": stamp["isa"]},
                     "calibration": CALIB, "evaluation": EVAL, "rows": stamp_rows(rows, stamp), "synthetic": synth})
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main(sys.argv[1:])
