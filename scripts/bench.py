"""`make bench`: edgemb's recommended artifacts against the peers users would otherwise stitch together.

On this x86 host, in one run: a cold and a warm `edgemb deploy` per model (wall time per stage), then
parity with the float PyTorch model (agreement on all and on confident samples, SQNR) on the weights' own
evaluation data and single-sample latency at 1 thread and at all cores for our recommended artifact,
onnxruntime float, onnxruntime's stock int8 (`quantize_static`), our OpenVINO IRs, LiteRT int8, and OpenVINO's
own benchmark_app on our int8 IR (the runner's overhead check). Engines alternate within each repeat; the
median of repeats is reported. Writes results/bench.json and BENCHMARKS.md, naming the CPU model and its ISA
flags (machines of one kind differ). A benchmark, not a test: nothing here asserts a time.

    python scripts/bench.py [MODEL[:WEIGHTS] ...]   (default: v2_1.0:imagenet1k_v1 v2_1.0:ref v3l_1.0:ref)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edgemb.artifacts import tool_versions, write_json
from edgemb.data import load_data
from edgemb.device.devices import SubprocessDevice
from edgemb.hostinfo import read_cpuinfo
from edgemb.metrics import parity
from edgemb.quant.peers import ort_quantize_static
from edgemb.stages.compile import default_data
from edgemb.stages.deploy import DeploySettings, deploy
from edgemb.targets import get_target
from edgemb.zoo.counting import count_macs
from edgemb.zoo.prepared import prepare_model
from provenance import measured_on
from readme_tables import tvm_table

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "bench.json"
MARKDOWN = ROOT / "BENCHMARKS.md"
REPEATS = 3
RUNS = 300
WARMUP = 30


def cpu_peak_int8_macs_per_second(cores: int) -> tuple[float, str]:
    """Peak int8 multiply-accumulates per second on `cores` cores, from the CPU's flags and clock.

    One 512-bit VNNI vpdpbusd does 64 int8 MACs; we assume one per cycle per core (one 512-bit FMA port, as
    on client Intel cores and Zen 4's double-pumped units). AVX2 without VNNI: 32 MACs per cycle (vpmaddubsw).
    """
    cpu = read_cpuinfo()
    if cpu.mhz is None:
        raise SystemExit("/proc/cpuinfo states no `cpu MHz`: the compute bound needs the clock")
    mhz = cpu.mhz
    per_cycle = 64 if "avx512_vnni" in cpu.flags else (32 if "avx2" in cpu.flags else 16)
    basis = (f"{cpu.model}, {mhz / 1000:.2f} GHz (cpuinfo), {per_cycle} int8 MACs/cycle/core "
             f"({'AVX-512 VNNI' if per_cycle == 64 else 'AVX2'})")
    return cores * mhz * 1e6 * per_cycle, basis


def benchmark_app_median_ms(xml: Path, threads: int) -> float:
    """OpenVINO's own tool, sync API, one stream, the same thread count and f32 inference hint as our runner."""
    tool = Path(sys.executable).with_name("benchmark_app")
    result = subprocess.run([str(tool), "-m", str(xml), "-d", "CPU", "-hint", "none", "-nstreams", "1", "-api",
                             "sync", "-nthreads", str(threads), "-niter", str(RUNS), "-infer_precision", "f32"],
                            capture_output=True, text=True, timeout=600)
    match = re.search(r"Median:\s*([\d.]+)\s*(ms|us)", result.stdout)
    if result.returncode != 0 or match is None:
        raise RuntimeError(f"benchmark_app failed: {result.stdout[-800:]} {result.stderr[-800:]}")
    value = float(match.group(1))
    return value / 1000 if match.group(2) == "us" else value


def bench_model(item: str, build: Path) -> dict:
    """Deploy cold and warm, measure every engine's parity on the weights' evaluation data, then time them."""
    name, _, weights = item.partition(":")
    weights = weights or "ref"
    build = build / weights
    started = time.perf_counter()
    cold = deploy(DeploySettings(name, "x86", weights=weights), build, log=lambda _: None)
    cold_seconds = time.perf_counter() - started
    started = time.perf_counter()
    warm = deploy(DeploySettings(name, "x86", weights=weights), build, log=lambda _: None)
    warm_seconds = time.perf_counter() - started
    folder = build / "x86" / name
    rec = cold["recommended"]
    prepared = prepare_model(name, weights)
    calib_spec, eval_spec = default_data(prepared, None, None)
    evaluation = load_data(eval_spec, prepared.preprocessing)
    x = evaluation.x[:64]
    calib = load_data(calib_spec, prepared.preprocessing).x
    stock_int8 = ort_quantize_static(folder / "compile" / "model.fp32.onnx", calib, build / f"{name}.ort-int8.onnx")
    engines = {
        f"edgemb recommended ({rec['backend']} {rec['precision']})": folder / rec["path"],
        "onnxruntime fp32": folder / "compile" / "model.fp32.onnx",
        "onnxruntime int8 (stock quantize_static)": stock_int8,
        "edgemb openvino fp32": folder / "compile" / "model.fp32.xml",
        "edgemb openvino int8": folder / "compile" / "model.int8.xml",
        "edgemb tflite int8": folder / "compile" / "model.int8.tflite",
    }
    device = SubprocessDevice("local", [sys.executable])
    cores = os.cpu_count() or 1
    float_logits = prepared.float_logits(evaluation.x)
    accuracy = {key: parity(float_logits, device.measure(path, evaluation.x, 1, 0, cores).output(), evaluation.y)
                for key, path in engines.items()}
    latency: dict[str, dict[str, float]] = {}
    for threads in sorted({1, cores}):
        samples: dict[str, list[float]] = {k: [] for k in [*engines, "openvino benchmark_app (our int8 IR)"]}
        for _ in range(REPEATS):
            for key, path in engines.items():
                samples[key].append(device.measure(path, x, RUNS, WARMUP, threads).result["p50_ms"])
            samples["openvino benchmark_app (our int8 IR)"].append(
                benchmark_app_median_ms(folder / "compile" / "model.int8.xml", threads))
        latency[f"{threads}t"] = {k: round(float(np.median(v)), 4) for k, v in samples.items()}
    macs = count_macs(prepared.model, prepared.spec.resolution)
    bound = {}
    for threads in sorted({1, cores}):
        peak, basis = cpu_peak_int8_macs_per_second(threads)
        bound[f"{threads}t"] = round(macs / peak * 1e3, 5)
    ours = next(k for k in engines if k.startswith("edgemb recommended"))
    return {
        "model": cold["model"], "weights": weights, "weights_sha256": cold["weights"]["sha256"],
        "evaluation": {"spec": eval_spec, "n": len(evaluation), "labelled": evaluation.y is not None},
        "calibration": calib_spec, "engine_parity": accuracy,
        "recommended": rec, "macs": macs, "compute_bound_ms": bound,
        "compute_bound_basis": basis, "latency_p50_ms": latency,
        "speedup_vs_onnxruntime_fp32": {t: round(v["onnxruntime fp32"] / v[ours], 2) for t, v in latency.items()},
        "speedup_vs_onnxruntime_stock_int8": {
            t: round(v["onnxruntime int8 (stock quantize_static)"] / v[ours], 2) for t, v in latency.items()},
        "openvino_int8_over_fp32": {t: round(v["edgemb openvino fp32"] / v["edgemb openvino int8"], 2)
                                    for t, v in latency.items()},
        "runner_overhead_vs_benchmark_app": {
            t: round(v["edgemb openvino int8"] / v["openvino benchmark_app (our int8 IR)"], 3)
            for t, v in latency.items()},
        "ratio_to_compute_bound": {t: round(v[ours] / bound[t], 1) for t, v in latency.items()},
        "deploy": {"cold_seconds": round(cold_seconds, 1), "warm_seconds": round(warm_seconds, 1),
                   "cold_stages": cold["stages"], "warm_stages": warm["stages"]},
        "accuracy": {f"{a['backend']} {a['precision']}": a["parity"] for a in cold["artifacts"] if "parity" in a},
    }


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _parity_cells(p: dict | None) -> str:
    """agreement | confident agreement (n) | top-5 overlap | SQNR, or dashes for engines without parity."""
    if p is None:
        return "- | - | - | -"
    confident = f"{_pct(p.get('agreement_confident'))} ({p.get('n_confident', 0)})"
    return f"{_pct(p['agreement'])} | {confident} | {_pct(p.get('top5_overlap'))} | {p['sqnr_db']:.1f}"


def markdown(report: dict) -> str:
    lines = ["# Benchmarks", "",
             "Written by `make bench` (scripts/bench.py) on this repository's CI machine kind; every number below "
             "comes from one run: engines alternate within each repeat, the median of "
             f"{REPEATS} repeats of the p50 over {RUNS} single-sample inferences is shown. Parity is against the "
             "float PyTorch model on the weights' own evaluation data: natural-photo crops (`photos:eval`, "
             "unlabelled; confident = float top probability >= 0.5) for the ImageNet weights at 224x224, "
             "Fashion-MNIST test images for the 64x64 reference models. Latency inputs: the first 64 of them.", "",
             f"Machine: {report['machine']}", ""]
    for m in report["models"]:
        threads = list(m["latency_p50_ms"])
        ev = m["evaluation"]
        lines += [f"## {m['model']} ({m['weights']})", "",
                  f"Weights sha256 `{(m['weights_sha256'] or '-')[:16]}`; parity on `{ev['spec']}` "
                  f"({ev['n']} samples{', labelled' if ev['labelled'] else ', unlabelled'}), calibration "
                  f"`{m['calibration']}`.", "",
                  f"Recommended artifact: **{m['recommended']['backend']} {m['recommended']['precision']}** "
                  f"({m['recommended']['reason']}).", "",
                  "| engine | agreement | confident agreement (n) | top-5 overlap | SQNR dB | "
                  + " | ".join(f"p50 ms ({t})" for t in threads) + " |",
                  "| --- | ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in threads) + " |"]
        for engine in m["latency_p50_ms"][threads[0]]:
            lines.append(f"| {engine} | {_parity_cells(m['engine_parity'].get(engine))} | "
                         + " | ".join(f"{m['latency_p50_ms'][t][engine]:.3f}" for t in threads) + " |")
        lines += ["", "Every artifact of the cold deploy, parity from its report (verified on this host):", "",
                  "| artifact | agreement | confident agreement (n) | top-5 overlap | SQNR dB |",
                  "| --- | ---: | ---: | ---: | ---: |"]
        lines += [f"| {name} | {_parity_cells(p)} |" for name, p in m["accuracy"].items()]
        lines += ["", "| ratio | " + " | ".join(threads) + " |", "| --- | " + " | ".join("---:" for _ in threads)
                  + " |"]
        for key, label in [("speedup_vs_onnxruntime_fp32", "speed-up of recommended vs onnxruntime fp32"),
                           ("speedup_vs_onnxruntime_stock_int8", "speed-up of recommended vs onnxruntime stock int8"),
                           ("openvino_int8_over_fp32", "OpenVINO int8 speed-up over its fp32"),
                           ("runner_overhead_vs_benchmark_app", "our runner / benchmark_app (same IR)"),
                           ("ratio_to_compute_bound", "recommended / compute bound")]:
            lines.append(f"| {label} | " + " | ".join(f"{m[key][t]}" for t in threads) + " |")
        d = m["deploy"]
        stages = ", ".join(f"{k} {v['seconds']:.1f} s" for k, v in d["cold_stages"].items())
        warm_state = ("every stage cached" if all(v["cached"] for v in d["warm_stages"].values()) else
                      "rebuilt: " + ", ".join(k for k, v in d["warm_stages"].items() if not v["cached"]))
        lines += ["", f"Compute bound: {m['macs'] / 1e6:.1f} M MACs over the peak int8 MAC rate "
                      f"({m['compute_bound_basis']}): " + ", ".join(f"{v} ms ({t})" for t, v in
                                                                     m["compute_bound_ms"].items()) + ".",
                  "", f"Deploy wall time: cold {d['cold_seconds']} s ({stages}); warm {d['warm_seconds']} s "
                      f"({warm_state}).", ""]
    tvm = ROOT / "results" / "tvm_tuning.json"
    if tvm.exists():
        lines += ["## TVM", "", tvm_table(json.loads(tvm.read_text())), ""]
    return "\n".join(lines)


def main() -> None:
    if sys.argv[1:] == ["--markdown-only"]:  # re-render BENCHMARKS.md from the last run's bench.json
        MARKDOWN.write_text(markdown(json.loads(RESULTS.read_text())))
        return
    models = sys.argv[1:] or ["v2_1.0:imagenet1k_v1", "v2_1.0:ref", "v3l_1.0:ref"]
    load_before = os.getloadavg()[0]
    build = Path(tempfile.mkdtemp(prefix="edgemb-bench-"))
    try:
        results = [bench_model(name, build) for name in models]
    finally:
        shutil.rmtree(build, ignore_errors=True)
    stamp = measured_on()
    _, basis = cpu_peak_int8_macs_per_second(1)
    isa = get_target("x86").isa
    report = {"machine": f"{basis.split(',')[0]}, {os.cpu_count()} cores, ISA flags: {' '.join(isa)}, "
                         f"load average {load_before:.1f} -> {os.getloadavg()[0]:.1f} during the run",
              "models": [{**r, "measured_on": stamp} for r in results],
              "tools": tool_versions("onnxruntime", "openvino", "ai-edge-litert", "apache-tvm"),
              "target": get_target("x86").to_dict()}
    write_json(RESULTS, report)
    MARKDOWN.write_text(markdown(report))
    print(MARKDOWN.read_text())


if __name__ == "__main__":
    main()
