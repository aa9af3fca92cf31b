"""Benchmark: TVM fp32 and int8 (default schedules, then optionally tuned) vs onnxruntime fp32/int8, one run.

For each model (default: torchvision's ImageNet MobileNetV2 at 224 and the 64x64 Fashion-MNIST reference),
quantizes with edgemb's own QDQ recipe, builds TVM fp32 and int8 libraries with the default schedules
(untuned), optionally tunes `--trials` MetaSchedule candidates per library on the dominant tasks within
`--tune-seconds` of search, and times every engine on the same input, 1 thread (or `--threads N`), alternating
engines, median of repeats. The tuning database is a deploy's (`database_dir`: the model's canonical name, e.g.
`v2_1.0` for `v2_1.0@224` with ImageNet weights and `v2_1.0@64` for the reference model, the precision, the x86
TVM target with `--threads` as its num-cores, the ISA): a deploy of the same model on this host at the same thread
count applies what this tuned, and this applies what a deploy tuned. `--threads target` is the x86 target's thread
count, the one `edgemb deploy --target x86` builds for. Writes results/tvm_tuning.json with the CPU, its ISA, the
load average, the int8 dot-product kernel the TVM library uses (vpdpbusd, vpmaddubsw...) and each library's
database and the thread count it serves.

    python scripts/tvm_tuning_bench.py [--trials 0] [--tune-seconds 600] [--tune fp32 int8] [--repeats 15]
        [--threads 1|N|target] [--models v2_1.0@224] [--out results/tvm_tuning.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edgemb.artifacts import tool_versions, write_json
from edgemb.backends.tvm_backend import (
    DEFAULT_TUNE_SECONDS,
    TvmRunner,
    compile_library,
    database_dir,
    database_records,
    import_onnx,
    tune,
    tvm_target_dict,
)
from edgemb.errors import EdgembError
from edgemb.hostinfo import read_cpuinfo
from edgemb.locking import file_lock
from edgemb.onnx_graph import session
from edgemb.stages.quantize import quantize_model
from edgemb.targets import Target, get_target
from edgemb.zoo.prepared import named_spec, prepare_model
from provenance import measured_on

OUT = Path(__file__).resolve().parents[1] / "results" / "tvm_tuning.json"
PRECISIONS = ("fp32", "int8")
# name as typed -> (weights, calibration); the tuning database goes by the canonical name (v2_1.0, v2_1.0@64)
MODELS = {"v2_1.0@224": ("imagenet1k_v1", "photos:calib:64"), "v2_1.0": ("ref", "fashion-mnist:train:256")}
TARGET_THREADS = "target"  # --threads target: the x86 target's thread count


def thread_count(text: str) -> int:
    """--threads: a count, or `target`: the x86 target's thread count, what `edgemb deploy --target x86` builds
    and tunes for (its TVM target's num-cores), so the databases this run tunes are the ones those deploys read."""
    threads = get_target("x86").threads if text == TARGET_THREADS else int(text)
    if threads < 1:
        raise ValueError(f"--threads {text}: at least 1")
    return threads


def bench_spec(target: Target, threads: int) -> dict:
    """The TVM target every library is built (and tuned) for: the target's, built for `threads` threads."""
    return tvm_target_dict(target) | {"num-cores": threads}


def database_for(model: str, precision: str, spec: dict, isa: tuple[str, ...]) -> Path:
    """The tuning database of a MODELS entry's library: a deploy's key (database_dir) for the model the bench runs,
    by its canonical name as prepare_model resolves it with the entry's weights (named_spec: no checkpoint read)."""
    return database_dir(named_spec(model, MODELS[model][0]), precision, spec, isa)


def host_cpu() -> dict[str, object]:
    """CPU model, the ISA flags that decide which kernels each engine can use, and the core count."""
    return {**read_cpuinfo().to_dict(), "cores": os.cpu_count()}


def median_ms(run, x: np.ndarray, repeats: int, number: int) -> float:
    """Median over `repeats` of the mean time of `number` back-to-back single-sample inferences."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(number):
            run(x)
        times.append((time.perf_counter() - started) / number)
    return float(np.median(times) * 1e3)


def build(onnx_path: Path, precision: str, name: str, spec: dict, isa: tuple[str, ...], trials: int, folder: Path,
          seconds: float | None = DEFAULT_TUNE_SECONDS) -> dict:
    """Untuned library, and the tuned one when `trials` > 0 (or a database is already cached); `name` is a MODELS
    key."""
    mod, lowering = import_onnx(onnx_path, spec, integer=precision == "int8")
    database = database_for(name, precision, spec, isa)
    started = time.perf_counter()
    untuned = folder / f"{precision}.untuned.so"
    compile_library(mod, spec, None, untuned)
    entry = {"untuned": untuned, "compile_seconds": round(time.perf_counter() - started, 1),
             "database": str(database), "database_threads": spec["num-cores"],
             "records_before": database_records(database), "tuning_seconds": 0.0}
    if lowering is not None:
        entry["integer_lowering"] = lowering.as_dict()
    if trials > 0:
        with file_lock(database.with_name(f".{database.name}.lock"), f"TVM tuning database {database}"):
            summary = tune(mod, spec, database, trials, seconds=seconds,  # a deploy may tune the same database
                           label=f"tune {name} {precision}")
        entry["tuning_seconds"], entry["tuning"] = summary.seconds, summary.as_dict()
    if database_records(database):  # each task from its best record: tuned, or its default schedule when faster
        entry["tuned"] = folder / f"{precision}.tuned.so"
        entry["functions_from_database"] = len(compile_library(mod, spec, database, entry["tuned"]))
    entry["records_after"] = database_records(database)
    return entry


def bench_model(model: str, weights: str, calib: str, spec: dict, isa: tuple[str, ...], trials: int, repeats: int,
                threads: int = 1, seconds: float | None = DEFAULT_TUNE_SECONDS,
                tuned: tuple[str, ...] = PRECISIONS) -> dict:
    """Every engine on one model, timed side by side."""
    prepared = prepare_model(model, weights)
    if prepared.spec.name != named_spec(model, weights).name:  # the database key would not be the deploy's
        raise EdgembError(f"{model} with {weights} resolves to {prepared.spec.name}, the catalog says "
                          f"{named_spec(model, weights).name}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        quantize_model(prepared, calib, folder)
        float_onnx, qdq_onnx = folder / "model.float.onnx", folder / "model.int8.onnx"
        builds = {p: build(path, p, model, spec, isa, trials if p in tuned else 0, folder, seconds)
                  for p, path in (("fp32", float_onnx), ("int8", qdq_onnx))}
        engines = {}
        for precision, path in (("fp32", float_onnx), ("int8", qdq_onnx)):
            sess = session(path, threads=threads)
            name = sess.get_inputs()[0].name
            engines[f"onnxruntime_{precision}"] = lambda v, s=sess, n=name: s.run(None, {n: v})
        for precision, entry in builds.items():
            engines[f"tvm_{precision}"] = TvmRunner(entry["untuned"]).run
            if "tuned" in entry:
                engines[f"tvm_{precision}_tuned"] = TvmRunner(entry["tuned"]).run
        resolution = prepared.spec.resolution
        x = np.random.default_rng(0).standard_normal((1, 3, resolution, resolution), dtype=np.float32)
        for run in engines.values():
            run(x)  # warm-up
        samples = {k: [] for k in engines}
        for _ in range(3):  # alternate engines so drift in machine load hits all of them alike
            for key, run in engines.items():
                samples[key].append(median_ms(run, x, repeats, 10))
    latency = {k: round(float(np.median(v)), 4) for k, v in samples.items()}
    best = {p: min(v for k, v in latency.items() if k.startswith(f"tvm_{p}")) for p in ("fp32", "int8")}
    return {
        "model": model, "weights": weights, "calibration": calib, "latency_ms": latency,
        "ratios": {"tvm_fp32_over_onnxruntime_fp32": round(best["fp32"] / latency["onnxruntime_fp32"], 2),
                   "tvm_int8_over_onnxruntime_int8": round(best["int8"] / latency["onnxruntime_int8"], 2),
                   "tvm_int8_over_onnxruntime_fp32": round(best["int8"] / latency["onnxruntime_fp32"], 2),
                   "tvm_int8_over_tvm_fp32": round(best["int8"] / best["fp32"], 2)},
        "builds": {p: {k: v for k, v in e.items() if k not in ("untuned", "tuned")} | {"tuned": "tuned" in e}
                   for p, e in builds.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--trials", type=int, default=0, help="MetaSchedule trials per library (0: defaults only)")
    parser.add_argument("--tune-seconds", type=float, default=DEFAULT_TUNE_SECONDS,
                        help=f"search budget per library in seconds (default {DEFAULT_TUNE_SECONDS:g}; 0: none)")
    parser.add_argument("--tune", nargs="+", default=list(PRECISIONS), choices=PRECISIONS,
                        help="which libraries --trials tunes (default both; a 10-minute budget each)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=thread_count, default=1,
                        help="threads for every engine (TVM and onnxruntime), and the num-cores TVM builds and tunes "
                             f"for; `{TARGET_THREADS}`: the x86 target's, so deploys on this host share the databases")
    parser.add_argument("--out", type=Path, default=OUT, help=f"result JSON (default {OUT})")
    args = parser.parse_args()
    if "tvm" in sys.modules:
        raise SystemExit("TVM was imported before TVM_NUM_THREADS was set: its thread pool would ignore --threads")
    os.environ["TVM_NUM_THREADS"] = str(args.threads)  # TVM's thread pool reads it once, when it starts
    target = get_target("x86")
    spec = bench_spec(target, args.threads)
    serves = ("the x86 target's, so deploys on this host share these databases" if args.threads == target.threads
              else f"an x86 deploy here builds for {target.threads}: it neither reads nor feeds these databases")
    print(f"TVM libraries built and tuned for {args.threads} thread(s) (num-cores in the database key); "
          f"{serves}", file=sys.stderr)
    load_before = os.getloadavg()[0]
    results = [bench_model(m, *MODELS[m], spec, target.isa, args.trials, args.repeats, args.threads,
                           args.tune_seconds or None, tuple(args.tune)) for m in args.models]
    stamp = measured_on()
    host = host_cpu() | {"load_average_1min": [round(load_before, 1), round(os.getloadavg()[0], 1)]}
    report = {"host": host, "threads": args.threads, "tvm_target": spec, "trials_per_library": args.trials,
              "deploy_threads": target.threads,
              "tuned_libraries": args.tune if args.trials else [],
              "tune_seconds_per_library": args.tune_seconds if args.trials else None,
              "models": [{**r, "measured_on": stamp} for r in results],
              "tools": tool_versions("apache-tvm", "onnxruntime")}
    write_json(args.out, report)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
