"""Stage: build every backend/precision a target supports and prove each artifact on the same data."""

from __future__ import annotations

import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgemb.artifacts import staged_output, tool_versions, write_json
from edgemb.backends import BACKENDS, PRECISIONS, Artifact, BuildInputs
from edgemb.backends.base import BACKEND_MISSING, DOES_NOT_FIT, FAILED, OK
from edgemb.budget import Budget
from edgemb.data import Data, as_data
from edgemb.errors import EdgembError
from edgemb.limits import check_limits
from edgemb.progress import progress
from edgemb.stages.export import export_simplified
from edgemb.stages.quantize import saved_eval_outputs
from edgemb.targets import Target, get_target
from edgemb.tasks import Task, head, run_outputs, task_for
from edgemb.zoo.prepared import PreparedModel, prepare_model

NOT_IMPLEMENTED = "not-implemented"
RUNS_HERE = (OK, DOES_NOT_FIT)  # a model too big for its board still runs on this host for parity
VERIFY_SECONDS = 20.0  # per artifact: a slow engine is verified on as many samples as this buys, never fewer
MIN_VERIFY_SAMPLES = 1000  # than this (nor more than the evaluation set has)
VERIFY_PROBE = 64  # samples run first, to time the engine


def default_data(prepared: PreparedModel, calib: str | Data | None,
                 eval_spec: str | Data | None) -> tuple[str | Data, str | Data | None]:
    """Named weights bring their own data (Fashion-MNIST for `ref`, natural photos for ImageNet); others need
    --calib."""
    named = prepared.weights.named if prepared.weights is not None else None
    if calib is None:
        if named is None or named.calibration is None:
            raise EdgembError("--calib SPEC is needed for your own weights: e.g. photos:calib for ImageNet-style "
                              "models, or imagefolder:DIR:300 with images like the ones the model will see")
        calib = named.calibration
    if eval_spec is None and named is not None:
        eval_spec = named.evaluation
    return calib, eval_spec


def plan(target: Target, backend: str | None) -> list[tuple[str, str]]:
    """(backend, precision) pairs to build: every one the target and edgemb support, or only those `backend`
    names, comma-separated, each NAME (all its precisions) or NAME:PRECISION, e.g. "onnxruntime:int8,openvino"."""
    wanted = [item.strip().partition(":")[::2] for item in backend.split(",")] if backend is not None else None
    if wanted is not None:
        names = list(dict.fromkeys(name for name, _ in wanted))
        for name in names:
            if name not in target.backends:
                raise EdgembError(f"target {target.name} does not support backend {name!r}; it supports "
                                  f"{', '.join(target.backends)}")
            if name not in BACKENDS:
                raise EdgembError(f"backend {name!r} is not implemented yet; available: {', '.join(BACKENDS)}")
        for name, precision in wanted:
            if precision and (precision not in target.precisions or precision not in PRECISIONS[name]):
                raise EdgembError(f"edgemb cannot build {name} {precision} for {target.name}: it builds "
                                  f"{', '.join(p for p in target.precisions if p in PRECISIONS[name])}")
    else:
        names = [b for b in target.backends if b in BACKENDS]
    pairs = [(b, p) for b in names for p in target.precisions if p in PRECISIONS[b]
             and (wanted is None or (b, p) in wanted or (b, "") in wanted)]
    if not pairs:
        raise EdgembError(f"edgemb cannot build any of {', '.join(target.backends)} x "
                          f"{', '.join(target.precisions)} for {target.name} yet")
    return pairs


def compile_model(model: str | PreparedModel, target_name: str | Target, out_dir: Path,
                  backend: str | None = None, weights: str | None = "ref", sha256: str | None = None,
                  calib: str | Data | None = None, eval_spec: str | Data | None = None, tune_trials: int = 0,
                  qdq_model: Path | None = None, budget: Budget | None = None,
                  log: Callable[[str], None] | None = None, tune_seconds: float | None = None) -> dict[str, Any]:
    """Build the target's artifacts into out_dir, verify each that can run here, write compile.json.

    A deploy passes what it already prepared (model, target, data); names are resolved here otherwise. With a
    budget, each verified artifact records whether it meets it.
    """
    check_limits({"tune_trials": tune_trials, "tune_seconds": tune_seconds})
    target = target_name if isinstance(target_name, Target) else get_target(target_name)
    pairs = plan(target, backend)
    prepared = model if isinstance(model, PreparedModel) else prepare_model(model, weights, sha256)
    calib, eval_spec = default_data(prepared, calib, eval_spec)
    calibration = as_data(calib, prepared.preprocessing)
    evaluation = as_data(eval_spec, prepared.preprocessing)
    task = task_for(prepared.spec, prepared.num_classes)  # decodes and judges every artifact's raw outputs
    float_outputs = prepared.float_outputs(evaluation.x) if evaluation is not None else None
    truth = task.truth(evaluation, prepared.preprocessing) if evaluation is not None else None
    started = time.perf_counter()
    with staged_output(out_dir) as stage:
        export_simplified(prepared.model, prepared.spec.resolution, stage / "model.float.onnx")
        scratch = Path(tempfile.mkdtemp(prefix="edgemb-compile-"))
        inputs = BuildInputs(prepared, stage / "model.float.onnx", calibration.x, stage, scratch,
                             {"tune_trials": tune_trials, "tune_seconds": tune_seconds, "qdq_model": qdq_model})
        try:
            records = _build_all(pairs, inputs, target, stage, evaluation, float_outputs, budget, log, task, truth)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        if backend is None:
            records += [{"backend": b, "precision": "-", "status": NOT_IMPLEMENTED,
                         "detail": f"edgemb has no {b} backend yet"} for b in target.backends if b not in BACKENDS]
        report = {"stage": "compile", "model": prepared.spec.name, "target": target.name,
                  "weights": prepared.weights.source if prepared.weights else None,
                  "weights_spec": prepared.weights_tag,
                  "calibration": {"spec": calibration.source, "n": len(calibration)},
                  "evaluation": {"spec": evaluation.source, "n": len(evaluation), "labelled": truth is not None}
                  if evaluation is not None else None,
                  "budget": budget.to_dict() if budget else None,
                  "artifacts": records, "seconds": round(time.perf_counter() - started, 2),
                  "tools": tool_versions("torch", "onnx", "onnxruntime", "openvino", "nncf", "ai-edge-litert",
                                         "apache-tvm")}
        write_json(stage / "compile.json", report)
    return report


def _build_all(pairs, inputs: BuildInputs, target: Target, stage: Path, evaluation, float_outputs,
               budget: Budget | None, log: Callable[[str], None] | None = None, task: Task | None = None,
               truth=None) -> list[dict]:
    """Build and verify each (backend, precision) in turn with the task's parity (every raw output decoded and
    compared with float); `log` gets one line per artifact with an ETA."""
    records = []
    started = time.perf_counter()
    for i, (backend_name, precision) in enumerate(progress(pairs, desc="compile", unit="artifact")):
        if log is not None:
            left = (time.perf_counter() - started) / i * (len(pairs) - i) if i else None
            eta = "" if left is None else f", ETA {left / 60:.1f} min" if left >= 60 else f", ETA {left:.0f} s"
            log(f"  compile: {backend_name} {precision} ({i + 1}/{len(pairs)}{eta})")
        artifact = _build_one(backend_name, precision, inputs, target, stage)
        record = artifact.record(stage)
        if artifact.status in RUNS_HERE and evaluation is not None:
            saved = saved_eval_outputs(inputs.options.get("qdq_model"), artifact.path, evaluation.x)
            runner = None if saved is not None else BACKENDS[backend_name].load(artifact, target)
            if saved is not None:  # onnxruntime int8 is the quantize stage's model: its evaluation, not a rerun
                outputs, n = saved, len(evaluation.x)
                record["verified_with"] = "the quantize stage's onnxruntime outputs of these bytes on these samples"
            else:
                outputs, n = _verification_outputs(runner, evaluation.x, len(task.output_names))
            record["parity"] = task.parity([o[:n] for o in float_outputs], outputs, head(truth, n))
            if budget is not None:
                record["within_budget"], record["budget_verdict"] = budget.verdict(record["parity"])
            if hasattr(runner, "kernel_precisions"):
                record["kernel_precisions"] = runner.kernel_precisions()
            if hasattr(runner, "reference_agreement"):
                record["reference_agreement"] = runner.reference_agreement(evaluation.x[:n], outputs, task)
        records.append(record)
    return records


def verification_count(seconds_per_sample: float, available: int) -> int:
    """How many evaluation samples an artifact is verified on: all of them, unless that would take more than
    VERIFY_SECONDS (then as many as fit, at least MIN_VERIFY_SAMPLES; the parity's n says how many).

    Timed, not guessed from the engine: the old rule capped every untuned TVM library at 1,000 samples, from
    when its naive loops took ~15 ms per 64x64 sample; with default schedules TVM int8 takes 0.22 ms, and the
    x86 reference deploy then recommended TVM int8 on a tenth of the samples the other seven artifacts had."""
    if seconds_per_sample <= 0:
        return available
    return min(available, max(MIN_VERIFY_SAMPLES, int(VERIFY_SECONDS / seconds_per_sample)))


def _verification_outputs(runner, x: np.ndarray, n_outputs: int) -> tuple[list[np.ndarray], int]:
    """Every raw output of the runner on the first `verification_count` samples, timed on the first few."""
    started = time.perf_counter()
    first = run_outputs(runner, x[:VERIFY_PROBE], n_outputs)
    probed = min(VERIFY_PROBE, len(x))
    n = verification_count((time.perf_counter() - started) / max(probed, 1), len(x))
    if n <= probed:
        return [o[:n] for o in first], n
    rest = run_outputs(runner, x[probed:n], n_outputs)
    return [np.concatenate([a, b]) for a, b in zip(first, rest, strict=True)], n


def _build_one(backend_name: str, precision: str, inputs: BuildInputs, target: Target, stage: Path) -> Artifact:
    """Build one artifact; a missing or failing engine becomes a status, not a crash of the whole stage."""
    backend = BACKENDS[backend_name]
    ok, why = backend.available()
    if not ok:
        return Artifact(backend_name, precision, None, BACKEND_MISSING, why)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return backend.build(inputs, target, precision, stage)
    except Exception as exc:  # an engine's own failure: report it and keep building the others
        first = (str(exc).strip() or type(exc).__name__).splitlines()[0][:300]
        return Artifact(backend_name, precision, None, FAILED, f"{type(exc).__name__}: {first}")
