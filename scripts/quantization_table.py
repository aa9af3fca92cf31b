"""Measure int8 quantization of every reference model and the real ImageNet MobileNetV2 @224, ours next to
onnxruntime's and NNCF's, into JSON.

Run by `make quant-table` (`MODELS=imagenet` for the V2@224 part only); writes results/quantization.json, from
which the README table is rendered (`make readme`). All tools see the same float graph and calibration samples.
On the real model each QDQ artifact is run twice: with onnxruntime's graph optimisations off (QDQ executes in
float: the quantizer's own fidelity) and on (QDQ fused into integer kernels: what the host really computes).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

from edgemb.artifacts import tool_versions, write_json
from edgemb.data import load_data
from edgemb.hostinfo import read_cpuinfo
from edgemb.metrics import parity
from edgemb.onnx_graph import run_batched, session
from edgemb.quant.correction import qdq_session
from edgemb.quant.isa import host_scheme
from edgemb.quant.options import QuantizeSettings
from edgemb.quant.peers import nncf_quantize, ort_quantize_static
from edgemb.stages.export import export_simplified
from edgemb.stages.quantize import quantize_model
from edgemb.zoo.inference import predict
from edgemb.zoo.prepared import prepare_model
from edgemb.zoo.weights.catalog import reference_entries
from provenance import stamp_rows

CALIB = "fashion-mnist:train:512"
EVAL = "fashion-mnist:test"
PER_TENSOR_MODELS = ("v2_1.0", "v3l_1.0")
OUT = Path(__file__).resolve().parent.parent / "results" / "quantization.json"
IMAGENET = "imagenet"  # pseudo model name selecting the real V2@224 measurements
REAL_MODEL, REAL_WEIGHTS = "v2_1.0", "imagenet1k_v1"
REAL_CALIB, REAL_EVAL = "photos:calib:300", "photos:eval"
CALIB_SIZES = (32, 96, 300, 1000)
DEFAULT_LABEL = "gptq weights, auto ranges, activation equalization, refit"  # tests/test_results.py checks it
FIELDS = ("agreement", "agreement_confident", "n_confident", "top5_overlap", "sqnr_db", "est_drop",
          "est_drop_low", "est_drop_high")


def measure(name: str, scratch: Path) -> list[dict]:
    """All configurations of one model, each as a row with its parity on the full test set."""
    prepared = prepare_model(name, "ref")
    calib = load_data(CALIB, prepared.preprocessing)
    evaluation = load_data(EVAL, prepared.preprocessing)
    float_logits = predict(prepared.model, evaluation.x)
    rows = []

    def ours(label: str, **options) -> Path:
        out = scratch / f"{name}-{label}"
        report = quantize_model(name, CALIB, out, weights="ref", settings=QuantizeSettings(**options), eval_spec=EVAL)
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

    # the peers get the exported float graph, never the one edgemb's activation equalization rewrote
    float_graph = export_simplified(prepared.model, prepared.spec.resolution, scratch / f"{name}-float.onnx")
    ours(f"per-channel default ({DEFAULT_LABEL})")
    ours("per-channel, gptq weights, auto ranges, no activation equalization, no refit (previous default)",
         act_equalization=False, refit=False)
    ours("per-channel mse ranges, gptq weights, activation equalization, refit", method="mse")
    ours("per-channel minmax ranges, gptq weights, activation equalization, refit", method="minmax")
    peer("onnxruntime quantize_static", "per-channel minmax",
         lambda: ort_quantize_static(float_graph, calib.x, scratch / f"{name}-ort.onnx"))
    peer("nncf quantize", "default (per-channel)",
         lambda: nncf_quantize(float_graph, calib.x, scratch / f"{name}-nncf.onnx"))
    if name in PER_TENSOR_MODELS:
        ours("per-tensor, gptq weights, auto ranges", granularity="per-tensor")
        ours("per-tensor, gptq weights, auto ranges, CLE + bias correction", granularity="per-tensor", cle=True,
             bias_correction=True)
        peer("onnxruntime quantize_static", "per-tensor minmax",
             lambda: ort_quantize_static(float_graph, calib.x, scratch / f"{name}-ort-pt.onnx", per_channel=False))
    return rows


def _both_runs(path: Path, float_logits: np.ndarray, x: np.ndarray) -> dict:
    """Parity of one QDQ model run as float (quantizer fidelity) and with integer kernels (this host)."""
    model = onnx.load(str(path))
    qdq = parity(float_logits, run_batched(qdq_session(model), x, desc="QDQ as float")[0], None)
    ints = parity(float_logits, run_batched(session(model), x, desc="integer kernels")[0], None)
    return {"qdq_float": {k: qdq.get(k) for k in FIELDS}, "integer_kernels": {k: ints.get(k) for k in FIELDS}}


def git_commit() -> str | None:
    """The commit the measured code was at (with "+dirty" when the tree had changes), None outside git."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{head}+dirty" if dirty else head


def host_cpu() -> dict:
    """CPU model and int8-relevant ISA flags of this host: every real-model number is tied to them."""
    return {"model": read_cpuinfo().model, **host_scheme().to_dict()}


def measure_imagenet(scratch: Path, calib_sizes: tuple[int, ...] = CALIB_SIZES) -> list[dict]:
    """Real ImageNet MobileNetV2 @224 on photo crops: edgemb configurations and peers, float-QDQ and integer."""
    prepared = prepare_model(REAL_MODEL, REAL_WEIGHTS)
    calib = load_data(REAL_CALIB, prepared.preprocessing)
    evaluation = load_data(REAL_EVAL, prepared.preprocessing)
    float_logits = prepared.float_logits(evaluation.x)
    rows = []
    commit, cpu = git_commit(), host_cpu()

    def add(tool: str, label: str, path: Path, seconds: float, **extra) -> None:
        rows.append({"model": f"{REAL_MODEL}@224 imagenet", "tool": tool, "config": label,
                     "seconds": round(seconds, 1), **extra, **_both_runs(path, float_logits, evaluation.x),
                     "commit": commit, "host_cpu": cpu})
        print(json.dumps(rows[-1]), flush=True)

    def ours(label: str, calib_spec: str = REAL_CALIB, **options) -> Path:
        out = scratch / f"real-{len(rows)}"
        report = quantize_model(prepared, load_data(calib_spec, prepared.preprocessing), out,
                                settings=QuantizeSettings(**options))
        add("edgemb", label, out / "model.int8.onnx", report["seconds"], calibration=report["calibration"]["n"],
            ranges=report["ranges"]["method"], bias_correction_applied=report.get("bias_correction", {}).get("applied"),
            refit_applied=report.get("refit", {}).get("applied"),
            act_equalization_applied=report.get("act_equalization", {}).get("applied"),
            step_seconds=report.get("step_seconds"))
        return out / "model.float.onnx"

    # the peers get the exported float graph, never the one edgemb's activation equalization rewrote
    float_graph = export_simplified(prepared.model, prepared.spec.resolution, scratch / "real-float.onnx")
    ours(f"default ({DEFAULT_LABEL})")
    ours(f"{DEFAULT_LABEL}, bias correction", bias_correction=True)
    ours("gptq weights, auto ranges, activation equalization, no refit", refit=False)
    ours("gptq weights, auto ranges, no activation equalization, refit", act_equalization=False)
    ours("gptq weights, auto ranges, no activation equalization, no refit (previous default)",
         act_equalization=False, refit=False)
    ours("round-to-nearest, mse ranges, no activation equalization, no refit (previous default before GPTQ)",
         method="mse", weight_rounding="nearest", act_equalization=False, refit=False)
    for tool, label, make in (
            ("onnxruntime quantize_static", "per-channel minmax",
             lambda: ort_quantize_static(float_graph, calib.x, scratch / "real-ort.onnx")),
            ("nncf quantize", "default (per-channel)",
             lambda: nncf_quantize(float_graph, calib.x, scratch / "real-nncf.onnx"))):
        started = time.perf_counter()
        path = make()
        add(tool, label, path, time.perf_counter() - started, calibration=len(calib))
    ours("per-tensor, gptq weights, auto ranges, CLE + bias correction", granularity="per-tensor", cle=True,
         bias_correction=True)
    for n in calib_sizes:
        if n != int(REAL_CALIB.rsplit(":", 1)[1]):
            ours(f"default ({DEFAULT_LABEL}), {n} calibration crops", f"photos:calib:{n}")
    return rows


def main(names: list[str]) -> None:
    """Measure the named reference models (all, plus `imagenet`, by default) into results/quantization.json."""
    existing = json.loads(OUT.read_text()) if OUT.exists() else {}
    rows_before = existing.get("rows", [])
    names = names or [*reference_entries("classification"), IMAGENET]
    real = existing.get("imagenet", {})
    rows = [r for r in rows_before if r["model"] not in names]
    with tempfile.TemporaryDirectory() as scratch:
        for name in names:
            if name == IMAGENET:
                real = {"model": f"{REAL_MODEL}@224", "weights": REAL_WEIGHTS, "calibration": REAL_CALIB,
                        "evaluation": REAL_EVAL, "host_cpu": host_cpu(),
                        "rows": stamp_rows(measure_imagenet(Path(scratch)))}  # commit, CPU, ISA per row
            else:
                rows += stamp_rows(measure(name, Path(scratch)))  # commit, CPU, ISA per row
    write_json(OUT, {"calibration": CALIB, "evaluation": EVAL, "rows": rows, "imagenet": real,
                     "tools": tool_versions("torch", "onnx", "onnxruntime", "nncf")})


if __name__ == "__main__":
    main(sys.argv[1:])
