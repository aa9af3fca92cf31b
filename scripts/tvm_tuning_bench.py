"""Benchmark: TVM fp32 after MetaSchedule tuning vs onnxruntime float, on this host, in one run.

Tunes `--trials` candidates (about one per second on 2 cores, so 600 is the issue's 10-minute budget) into
the cached database that every later TVM build of the same model+target reuses, then times both engines
on the same inputs, alternating, median of repeats. Writes results/tvm_tuning.json.

    python scripts/tvm_tuning_bench.py [--model v2_1.0] [--trials 600]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from edgemb.artifacts import tool_versions, write_json
from edgemb.backends.tvm_backend import (
    TvmRunner,
    compile_library,
    database_dir,
    database_records,
    import_onnx,
    tune,
    tvm_target_dict,
)
from edgemb.export import export_simplified
from edgemb.onnx_graph import session
from edgemb.targets import get_target
from edgemb.zoo.weights import prepare_model

OUT = Path(__file__).resolve().parents[1] / "results" / "tvm_tuning.json"


def median_ms(run, x: np.ndarray, repeats: int, number: int) -> float:
    """Median over `repeats` of the mean time of `number` back-to-back single-sample inferences."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(number):
            run(x)
        times.append((time.perf_counter() - started) / number)
    return float(np.median(times) * 1e3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="v2_1.0")
    parser.add_argument("--trials", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    target = get_target("x86")
    prepared = prepare_model(args.model, "ref")
    spec = tvm_target_dict(target)
    database = database_dir(prepared.spec.name, spec)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        export_simplified(prepared.model, prepared.spec.resolution, onnx_path)
        mod, _ = import_onnx(onnx_path, spec)
        untuned = Path(tmp) / "untuned.so"
        compile_library(mod, spec, None, untuned)
        records_before = database_records(database)
        seconds = tune(mod, spec, database, args.trials) if args.trials else 0.0
        tuned = Path(tmp) / "tuned.so"
        compile_library(mod, spec, database, tuned)
        x = np.random.default_rng(0).standard_normal((1, 3, prepared.spec.resolution, prepared.spec.resolution),
                                                     dtype=np.float32)
        ort = session(onnx_path, threads=target.threads)
        name = ort.get_inputs()[0].name
        engines = {"onnxruntime_fp32": lambda v: ort.run(None, {name: v}),
                   "tvm_untuned": TvmRunner(untuned).run, "tvm_tuned": TvmRunner(tuned).run}
        for run in engines.values():
            run(x)  # warm-up
        results = {k: [] for k in engines}
        for _ in range(3):  # alternate engines so drift in machine load hits all of them alike
            for key, run in engines.items():
                results[key].append(median_ms(run, x, args.repeats, 20))
    latency = {k: round(float(np.median(v)), 4) for k, v in results.items()}
    report = {
        "model": prepared.spec.name, "target": "x86", "tvm_target": spec, "threads": target.threads,
        "trials": args.trials, "tuning_seconds": round(seconds, 1), "database_records_before": records_before,
        "database_records_after": database_records(database), "latency_ms": latency,
        "ratio_tuned_to_onnxruntime": round(latency["tvm_tuned"] / latency["onnxruntime_fp32"], 2),
        "ratio_untuned_to_onnxruntime": round(latency["tvm_untuned"] / latency["onnxruntime_fp32"], 2),
        "tools": tool_versions("apache-tvm", "onnxruntime"),
    }
    write_json(OUT, report)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
