"""Measure int8 quantization of every reference model, ours next to onnxruntime's and NNCF's, into JSON.

Run by `make quant-table` (about 15 minutes on 2 cores); writes results/quantization.json, from which the
README table is rendered (`make readme`). All tools see the same float graph and the same calibration samples.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from edgemb.artifacts import tool_versions, write_json
from edgemb.data import load_data
from edgemb.evaluate import predict
from edgemb.metrics import parity
from edgemb.onnx_graph import run_batched, session
from edgemb.quant.peers import nncf_quantize, ort_quantize_static
from edgemb.quant.pipeline import quantize_model
from edgemb.zoo.weights import prepare_model, reference_entries

CALIB = "fashion-mnist:train:512"
EVAL = "fashion-mnist:test"
PER_TENSOR_MODELS = ("v2_1.0", "v3l_1.0")
OUT = Path(__file__).resolve().parent.parent / "results" / "quantization.json"


def measure(name: str, scratch: Path) -> list[dict]:
    """All configurations of one model, each as a row with its parity on the full test set."""
    prepared = prepare_model(name, "ref")
    calib = load_data(CALIB, prepared.preprocessing)
    evaluation = load_data(EVAL, prepared.preprocessing)
    float_logits = predict(prepared.model, evaluation.x)
    rows = []

    def ours(label: str, **options) -> Path:
        out = scratch / f"{name}-{label}"
        report = quantize_model(name, CALIB, out, weights="ref", eval_spec=EVAL, **options)
        rows.append({"model": name, "tool": "edgemb", "config": label, "seconds": report["seconds"],
                     **{k: report["eval"][k] for k in ("float_top1", "quant_top1", "drop", "agreement", "sqnr_db")}})
        print(json.dumps(rows[-1]), flush=True)
        return out / "model.float.onnx"

    def peer(tool: str, label: str, make) -> None:
        started = time.perf_counter()
        path = make()
        logits = run_batched(session(path), evaluation.x)[0]
        result = parity(float_logits, logits, evaluation.y)
        rows.append({"model": name, "tool": tool, "config": label, "seconds": round(time.perf_counter() - started, 1),
                     **{k: result[k] for k in ("float_top1", "quant_top1", "drop", "agreement", "sqnr_db")}})
        print(json.dumps(rows[-1]), flush=True)

    float_graph = ours("per-channel mse (default)")
    ours("per-channel minmax", method="minmax")
    peer("onnxruntime quantize_static", "per-channel minmax",
         lambda: ort_quantize_static(float_graph, calib.x, scratch / f"{name}-ort.onnx"))
    peer("nncf quantize", "default (per-channel)",
         lambda: nncf_quantize(float_graph, calib.x, scratch / f"{name}-nncf.onnx"))
    if name in PER_TENSOR_MODELS:
        ours("per-tensor mse", granularity="per-tensor")
        ours("per-tensor mse + CLE + bias correction", granularity="per-tensor", cle=True, bias_correction=True)
        peer("onnxruntime quantize_static", "per-tensor minmax",
             lambda: ort_quantize_static(float_graph, calib.x, scratch / f"{name}-ort-pt.onnx", per_channel=False))
    return rows


def main(names: list[str]) -> None:
    """Measure the named reference models (all by default) and merge them into results/quantization.json."""
    existing = json.loads(OUT.read_text())["rows"] if OUT.exists() else []
    names = names or list(reference_entries())
    rows = [r for r in existing if r["model"] not in names]
    with tempfile.TemporaryDirectory() as scratch:
        for name in names:
            rows += measure(name, Path(scratch))
    write_json(OUT, {"calibration": CALIB, "evaluation": EVAL, "rows": rows,
                     "tools": tool_versions("torch", "onnx", "onnxruntime", "nncf")})


if __name__ == "__main__":
    main(sys.argv[1:])
