"""`edgemb deploy`: export -> quantize -> compile -> profile -> report, in build/TARGET/MODEL/.

Each stage runs into its own folder and is keyed by a content hash of everything that determines it (the
model and weights hashes, data specs, settings, the target file, the edgemb source and every tool version).
A stage whose folder carries a matching `stage.json` is reused; the marker is written only after the stage's
files are all in place, so an interrupted run is redone rather than mistaken for finished.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from edgemb.artifacts import tool_versions, write_json
from edgemb.backends.base import DOES_NOT_FIT, NEEDS_DEVICE, OK
from edgemb.budget import DEFAULT_MAX_DROP, DEFAULT_MIN_AGREEMENT, FAIL, INCONCLUSIVE, PASS, Budget
from edgemb.data import Data, load_data, parse_spec
from edgemb.device.devices import open_device
from edgemb.errors import EdgembError, ParityError
from edgemb.latency_estimate import estimate_latency
from edgemb.onnx_graph import Graph
from edgemb.stages.compile import compile_model, default_data
from edgemb.stages.deploy_guard import one_run_per_folder
from edgemb.stages.export import export_model, output_names
from edgemb.stages.profile import TIMING_ROUNDS, run_on_device
from edgemb.stages.quantize import quantize_model
from edgemb.stages.verify import LAYER_SAMPLES, layer_table
from edgemb.targets import Target, get_target
from edgemb.tasks import Task, head, task_for
from edgemb.zoo import parse_model_name
from edgemb.zoo.counting import count_macs
from edgemb.zoo.prepared import PreparedModel, prepare_model
from edgemb.zoo.weights.load import default_weights

PACKAGE = Path(__file__).resolve().parents[1]  # edgemb/, whose whole source code_fingerprint hashes
TOOLS = ("torch", "onnx", "onnxsim", "onnxruntime", "openvino", "nncf", "litert-torch", "ai-edge-quantizer",
         "ai-edge-litert", "tflite-micro", "apache-tvm")
RUNNABLE = (".tflite", ".xml", ".so", ".onnx")
# An emulated board checks numerics only: one inference of MobileNetV2 at 224 takes 0.4-3 s under qemu-user, so
# 16 samples per artifact prove the ARM build computes what the host build does (outputs compared sample by
# sample) in about a minute each, while the accuracy verdict rests on the full evaluation set on this host.
EMULATED_SAMPLES = 16
SHOWN_IMAGES = 4  # evaluation images a detector's or segmenter's deploy draws in pictures.html
POSTPROCESS_SAMPLES = 20  # single images whose host post-processing (decode, NMS, argmax) is timed


@dataclass
class DeploySettings:
    """Everything a user can set on `make deploy`; all of it is part of the stage keys."""

    model: str
    target: str
    weights: str | None = None  # None: ImageNet weights when on this machine, else ref (see default_weights)
    sha256: str | None = None
    calib: str | None = None
    eval: str | None = None
    device: str | None = None
    max_drop: float = DEFAULT_MAX_DROP  # top-1 points: measured with labels, estimated (95% interval) without
    min_agreement: float | None = DEFAULT_MIN_AGREEMENT  # optional: agreement on the float model's confident samples
    min_sqnr: float | None = None  # logits SQNR floor in dB, any data
    tune_trials: int = 0
    runs: int | None = None  # timed inferences per artifact on a real device (default 50; none when emulated)
    warmup: int = 5
    device_samples: int | None = None  # inputs whose device outputs are checked (64 here, 200 remote, 16 emulated)
    backend: str | None = None  # only these: comma-separated NAME or NAME:PRECISION (default: all the target has)
    tune_seconds: float | None = None  # TVM tuning search budget per library (None: 600 s when tuning; 0: none)

    @property
    def budget(self) -> Budget:
        """The accuracy budget these settings ask for."""
        return Budget(self.max_drop, self.min_agreement, self.min_sqnr)


def code_fingerprint() -> str:
    """Hash of edgemb's own source: a code change invalidates cached stages like a tool upgrade does."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*.py")):
        digest.update(path.relative_to(PACKAGE).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def stage_key(inputs: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


class Stages:
    """Runs or reuses the stages of one deploy folder and records what happened to each."""

    def __init__(self, root: Path, log: Callable[[str], None]) -> None:
        self.root = root
        self.log = log
        self.timings: dict[str, dict[str, Any]] = {}

    def run(self, name: str, inputs: dict[str, Any], build: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
        folder = self.root / name
        marker = folder / "stage.json"
        key = stage_key(inputs)
        started = time.perf_counter()
        if marker.exists():
            recorded = json.loads(marker.read_text())
            if recorded.get("key") == key:
                self.timings[name] = {"seconds": round(time.perf_counter() - started, 3), "cached": True,
                                      "built_seconds": recorded.get("seconds")}
                self.log(f"{name:<9} cached ({recorded.get('seconds', 0):.1f} s when built)")
                return recorded["result"]
        if folder.exists():
            shutil.rmtree(folder)  # stale or interrupted: never mix old and new files
        self.log(f"{name:<9} running...")
        result = build(folder)
        seconds = round(time.perf_counter() - started, 2)
        write_json(marker, {"stage": name, "key": key, "inputs": inputs, "seconds": seconds, "result": result})
        self.timings[name] = {"seconds": seconds, "cached": False}
        self.log(f"{name:<9} done in {seconds:.1f} s")
        return result


@one_run_per_folder  # checks the settings, locks OUT/TARGET/MODEL, removes a report of other settings
def deploy(settings: DeploySettings, out_root: Path = Path("build"), log: Callable[[str], None] = print
           ) -> dict[str, Any]:
    """Build, verify and time every artifact the target supports; write report.json and report.html.

    The model, target and data are prepared once here and handed to every stage (one walk down the chain).
    """
    budget = settings.budget
    started = time.perf_counter()
    target = get_target(settings.target)
    spec = parse_model_name(settings.model)
    if settings.weights is None:
        tag, note = default_weights(spec)
        if note:
            log(note)
        settings = replace(settings, weights=tag)
    prepared = prepare_model(spec, settings.weights, settings.sha256)
    calib, eval_spec = default_data(prepared, settings.calib, settings.eval)
    if eval_spec is None:
        raise EdgembError("--eval SPEC is needed: the report proves accuracy against the float model on it "
                          "(labelled data gives a top-1 drop; unlabelled data, e.g. photos:eval, agreement)")
    calibration = load_data(calib, prepared.preprocessing)
    evaluation = load_data(eval_spec, prepared.preprocessing)
    task = task_for(prepared.spec, prepared.num_classes)  # decodes the raw outputs and judges them, in its points
    labelled = task.truth(evaluation, prepared.preprocessing) is not None
    log(f"{task.name}: weights {prepared.weights_tag} at {prepared.spec.resolution}x{prepared.spec.resolution}; "
        f"calibration {calib} ({len(calibration)}), evaluation {eval_spec} ({len(evaluation)}"
        f"{', labelled' if labelled else ', unlabelled'}); budget: {budget.describe(labelled, task.metric_label)}")
    root = out_root / target.name / settings.model
    stages = Stages(root, log)
    base = {"model": prepared.spec.name, "weights_sha256": prepared.weights.sha256 if prepared.weights else None,
            "preprocessing": prepared.preprocessing.to_dict(), "code": code_fingerprint(),
            "tools": tool_versions(*TOOLS)}

    export = stages.run("export", base, lambda folder: _export(prepared, folder))
    quant_inputs = {**base, "calib": calib, "eval": eval_spec, "budget": budget.to_dict(), "isa": sorted(target.isa)}
    quantize = stages.run("quantize", quant_inputs, lambda folder: _quantize(prepared, calibration, evaluation,
                                                                             budget, target, folder))
    target_text = target.path.read_text() if target.path else json.dumps(target.to_dict())
    compile_inputs = {**quant_inputs, "int8": _file_hash(root / "quantize" / "model.int8.onnx"),
                      "target": target_text, "tune_trials": settings.tune_trials,
                      "tune_seconds": settings.tune_seconds if settings.tune_trials else None,
                      "tvm_database": _tvm_database_state(prepared, target), "backend": settings.backend}
    compiled = stages.run("compile", compile_inputs, lambda folder: compile_model(
        prepared, target, folder, backend=settings.backend, calib=calibration, eval_spec=evaluation,
        tune_trials=settings.tune_trials, tune_seconds=settings.tune_seconds,
        qdq_model=root / "quantize" / "model.int8.onnx", budget=budget, log=log))
    device_uri = _default_device(settings.device, target)
    profile_inputs = {**compile_inputs, "artifacts": [a.get("sha256") for a in compiled["artifacts"]],
                      "device": device_uri, "runs": settings.runs, "warmup": settings.warmup,
                      "device_samples": settings.device_samples}
    profiled = stages.run("profile", profile_inputs, lambda folder: _profile(
        settings, target, device_uri, prepared, evaluation, compiled, root / "compile", folder, log, task))

    report = build_report(settings, target, prepared, export, quantize, compiled, profiled, root, task)
    report["task"]["postprocess_ms"] = postprocess_ms(task, prepared.float_outputs_head(evaluation.x,
                                                                                        POSTPROCESS_SAMPLES))
    if task.pictures:
        report["pictures"] = _write_pictures(task, prepared, evaluation, root, report)
    report["stages"] = stages.timings
    report["seconds"] = round(time.perf_counter() - started, 2)
    write_json(root / "report.json", report)
    from edgemb.stages.report_html import write_html

    write_html(report, root / "report.html")
    return report


def postprocess_ms(task: Task, outputs: list[Any]) -> float:
    """Median host time in ms of the task's post-processing for one image: the part of a detector's or
    segmenter's latency that no artifact's timing includes (decode, NMS, mask argmax run in numpy here)."""
    times = []
    for i in range(min(POSTPROCESS_SAMPLES, len(outputs[0]))):
        one = [o[i:i + 1] for o in outputs]
        started = time.perf_counter()
        task.postprocess(one)
        times.append(1000.0 * (time.perf_counter() - started))
    return round(statistics.median(times), 3)


def _write_pictures(task: Task, prepared: PreparedModel, evaluation: Data, root: Path,
                    report: dict[str, Any]) -> str:
    """pictures.html beside the report: truth, float and int8 boxes/masks of the first evaluation images, so a
    reader sees where int8 differs (int8 is the quantize stage's QDQ model every int8 artifact is built from)."""
    import numpy as np
    import onnx

    from edgemb.onnx_graph import run_batched, session
    from edgemb.tasks.render import comparison_page, unnormalize

    shown = min(SHOWN_IMAGES, len(evaluation))
    x = evaluation.x[:shown]
    columns: dict[str, list[Any]] = {}
    truth = head(task.truth(evaluation, prepared.preprocessing), shown)
    if truth is not None:
        columns["truth"] = task.truth_results(truth)
    columns["float (PyTorch)"] = task.postprocess(prepared.float_outputs_head(evaluation.x, shown))
    qdq = onnx.load(str(root / "quantize" / "model.int8.onnx"))
    columns["int8 (quantize stage QDQ, onnxruntime)"] = task.postprocess(run_batched(session(qdq), x, desc="pictures"))
    metric = task.metric
    summary = [f"{a['backend']} {a['precision']}: {task.metric_label} {a['parity'].get(f'quant_{metric}', '-')} "
               f"(float {a['parity'].get(f'float_{metric}', '-')}), drop {a['parity'].get('drop', '-')} points, "
               f"agreement with float {a['parity'].get('agreement')}" for a in report["artifacts"] if a.get("parity")]
    pixels = np.stack([unnormalize(sample, prepared.preprocessing) for sample in x])
    page = comparison_page(f"{prepared.spec.name} ({task.name}) on {evaluation.source}", pixels, columns,
                           tuple(evaluation.classes) if evaluation.classes else None, summary)
    tmp = root / ".pictures.html.tmp"
    tmp.write_text(page)
    tmp.replace(root / "pictures.html")
    return "pictures.html"


def _export(prepared: PreparedModel, folder: Path) -> dict[str, Any]:
    """The export stage; a simplified graph that disagrees with PyTorch stops the deploy."""
    result = export_model(prepared, folder)
    if not result.passed:
        parity_ = result.report["parity"]
        raise ParityError(f"simplified ONNX differs from PyTorch by {parity_['max_abs_diff']:.2e}")
    return result.report


def _file_hash(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def _tvm_database_state(prepared: PreparedModel, target: Target) -> int | None:
    """Records in the TVM tuning databases this build would apply (one per precision, the TVM backend's key,
    database_dir): tuning elsewhere (another deploy, `make tvm-tune-bench`) invalidates the compile."""
    if "tvm" not in target.backends or target.tvm_target is None:
        return None
    from edgemb.backends.tvm_backend import PRECISIONS as TVM_PRECISIONS
    from edgemb.backends.tvm_backend import database_dir, database_records, tvm_target_dict

    spec = tvm_target_dict(target)
    return sum(database_records(database_dir(prepared.spec, precision, spec, target.isa))
               for precision in TVM_PRECISIONS if precision in target.precisions)


def _quantize(prepared: PreparedModel, calibration: Data, evaluation: Data, budget: Budget, target: Target,
              folder: Path) -> dict[str, Any]:
    """Our QDQ int8 model within the accuracy budget for the target's integer kernels (its ISA decides the
    weight range), plus the per-layer SQNR table the report plots."""
    report = quantize_model(prepared, calibration, folder, eval_spec=evaluation, budget=budget, isa=target.isa,
                            arch=target.arch)
    import onnx

    table = layer_table(Graph.load(folder / "model.float.onnx"), onnx.load(str(folder / "model.int8.onnx")),
                        evaluation.x[:LAYER_SAMPLES])
    samples = min(LAYER_SAMPLES, len(evaluation))
    write_json(folder / "layers.json", {"samples": samples, "layers": table})
    return {**report, "layer_sqnr": {"samples": samples, "layers": table}}


def _default_device(device: str | None, target: Target) -> str | None:
    """This host for x86, the emulated board for aarch64 boards, nothing for boards edgemb cannot reach."""
    if device is not None:
        return device
    if target.name == "x86":
        return "local"
    if target.kind == "cpu" and target.arch == "aarch64":
        return f"emulated:{target.name}"
    return None


def _profile(settings: DeploySettings, target: Target, device_uri: str | None, prepared: PreparedModel,
             data: Data, compiled: dict[str, Any], compile_dir: Path, folder: Path, log,
             task: Task | None = None) -> dict[str, Any]:
    """Run each runnable artifact on the device: outputs on a sample of the eval set (every output by name,
    judged by the task's parity), then timed runs.

    An emulated board runs EMULATED_SAMPLES inputs per artifact and times nothing: its speed says nothing
    about the board's.
    """
    folder.mkdir(parents=True, exist_ok=True)
    if device_uri is None:
        return {"device": None, "note": f"{target.name} has no device edgemb can reach: pass --device to time it",
                "artifacts": []}
    device = open_device(device_uri, target.name, log=log)
    remote = device_uri != "local"
    if device.emulated:
        samples, runs, warmup = settings.device_samples or EMULATED_SAMPLES, 0, 0
    else:
        samples, runs, warmup = settings.device_samples or (200 if remote else 64), settings.runs or 50, \
            settings.warmup
    task = task or task_for(prepared.spec, prepared.num_classes)
    x = data.x[:samples]
    truth = head(task.truth(data, prepared.preprocessing), len(x))
    float_outputs = [o[:samples] for o in prepared.float_outputs(data.x)]
    names = output_names(prepared.model)
    threads = target.threads if device_uri == "local" else 0
    runnable = {f"{r['backend']} {r['precision']}": compile_dir / r["path"] for r in compiled["artifacts"]
                if _why_not_profiled(r, compile_dir) is None}
    runs_by_name = {run.name: run for run in run_on_device(device, runnable, x, runs, warmup, threads, log, names)}
    results = []
    for record in compiled["artifacts"]:
        entry = {"backend": record["backend"], "precision": record["precision"]}
        run = runs_by_name.get(f"{record['backend']} {record['precision']}")
        if run is None:
            entry["skipped"] = _why_not_profiled(record, compile_dir)
        elif run.error is not None:
            entry["error"] = (f"failed on the emulated board, so unverified for {target.name}: {run.error} (qemu-user "
                              "can refuse what the board runs: check it there with --device)" if device.emulated
                              else run.error)
        else:
            entry["device_parity"] = task.parity(float_outputs, [run.outputs[name] for name in names], truth)
            entry["runtime"] = run.runtime
            if run.latency is not None:
                entry["latency"] = run.latency
        results.append(entry)
    write_json(folder / "profile.json", {"device": device_uri, "artifacts": results})
    rounds = 1 if runs == 0 else min(TIMING_ROUNDS, runs)
    return {"device": device_uri, "emulated": device.emulated, "samples": len(x), "runs": runs,
            "rounds": rounds, "threads": threads, "artifacts": results}


def _why_not_profiled(record: dict[str, Any], compile_dir: Path) -> str | None:
    """Why an artifact is not run on the device (None when it is)."""
    if record["backend"] == "tflm":
        return "microcontroller artifact: compile model_data.cc into the firmware; timed on the MCU, not here"
    if record["status"] not in (OK, NEEDS_DEVICE, DOES_NOT_FIT) or "path" not in record:
        return f"status {record['status']}"
    if (compile_dir / record["path"]).suffix not in RUNNABLE:
        return f"{Path(record['path']).suffix} artifacts have no device runner"
    if record["status"] == NEEDS_DEVICE and record["backend"] != "tvm":
        return record.get("detail", "needs its device")
    return None


def build_report(settings: DeploySettings, target: Target, prepared: PreparedModel, export: dict[str, Any],
                 quantize: dict[str, Any], compiled: dict[str, Any], profiled: dict[str, Any],
                 root: Path, task: Task | None = None) -> dict[str, Any]:
    """report.json: one entry per artifact with parity, latency and memory, the recommendation and the verdict."""
    task = task or task_for(prepared.spec, prepared.num_classes)
    by_key = {(p["backend"], p["precision"]): p for p in profiled["artifacts"]}
    measured_on_board = profiled["device"] is not None and not profiled.get("emulated", False)
    macs = None if measured_on_board else count_macs(prepared.model, prepared.spec.resolution)
    artifacts = []
    for record in compiled["artifacts"]:
        entry = {k: record[k] for k in ("backend", "precision", "status") if k in record}
        if "path" in record:
            entry.update(path=str(Path("compile") / record["path"]), sha256=record["sha256"],
                         size_bytes=record["size_bytes"])
        # A backend's own performance model (Vela for Ethos-U NPUs) gives `latency_estimate` with the artifact.
        for key in ("detail", "kernel_precisions", "arch", "note", "tuning", "integer_lowering", "latency_estimate",
                    "npu_split", "parity_note"):
            if key in record:
                entry[key] = record[key]
        profile = by_key.get((record["backend"], record["precision"]), {})
        host_parity = record.get("parity")
        if host_parity is not None:
            entry["parity"] = {**_parity_fields(host_parity, task), "where": "this host", "n": host_parity["n"]}
        elif "device_parity" in profile:
            entry["parity"] = {**_parity_fields(profile["device_parity"], task), "where": profiled["device"],
                               "n": profile["device_parity"]["n"]}
        if "device_parity" in profile:
            entry["device_parity"] = {**_parity_fields(profile["device_parity"], task),
                                      "n": profile["device_parity"]["n"]}
        if "latency" in profile:
            entry["latency"] = profile["latency"]
        elif macs is not None and "path" in record:
            estimate = estimate_latency(target, record["backend"], record["precision"], macs)
            if estimate is not None:
                entry["latency_estimate"] = estimate
        for key in ("skipped", "error"):
            if key in profile:
                entry[f"profile_{key}"] = profile[key]
        if "memory" in record:
            entry["memory"] = {"arena_bytes": record["memory"].get("arena_bytes"),
                               "flash_bytes": record["memory"].get("flash_bytes"),
                               "fits": record.get("fits")}
        entry["budget_status"], entry["budget_verdict"] = _within_budget(entry, settings.budget)
        entry["within_budget"] = entry["budget_status"] == PASS
        artifacts.append(entry)
    labelled = compiled["evaluation"]["labelled"]
    recommended = _recommend(artifacts, settings.budget, labelled, task.metric_label)
    inconclusive = [f"{a['backend']} {a['precision']}" for a in artifacts if a["budget_status"] == INCONCLUSIVE]
    res = prepared.spec.resolution
    return {
        "model": prepared.spec.name, "target": target.name, "board": target.board,
        "task": {"name": task.name, "metric": task.metric, "metric_label": task.metric_label,
                 "outputs": list(task.output_names), "drop_unit": f"{task.metric_label} points"},
        "input": {"name": "input", "shape": [1, 3, res, res], "dtype": "float32", "layout": "NCHW",
                  "preprocessing": prepared.preprocessing.to_dict()},
        "weights": {"spec": settings.weights, "sha256": prepared.weights.sha256 if prepared.weights else None},
        "settings": {k: v for k, v in asdict(settings).items() if k not in ("model", "target")},
        "budget": {**settings.budget.to_dict(), "applied": settings.budget.describe(labelled, task.metric_label)},
        "data": {"calibration": _data_record(compiled["calibration"]),
                 "evaluation": _data_record(compiled["evaluation"])},
        "device": {"uri": profiled["device"], "emulated": profiled.get("emulated", False),
                   "samples": profiled.get("samples"),
                   "note": (f"emulated (qemu-user): outputs of {profiled.get('samples')} samples per artifact "
                            "checked, nothing timed; latencies are estimates from published measurements of the "
                            "board" if profiled.get("emulated") else profiled.get("note", ""))},
        "latency_source": "measured on the device" if measured_on_board else _estimate_source(artifacts),
        "export": {"nodes_before": export.get("nodes_before"), "nodes_after": export.get("nodes_after"),
                   "parity": export.get("parity")},
        "quantization": {"settings": quantize.get("settings"), "eval": quantize.get("eval"),
                         "layers_kept_float": quantize.get("layers_kept_float"),
                         "activations_16bit": quantize.get("activations_16bit"),
                         "layers_16bit_input": quantize.get("layers_16bit_input"),
                         "rescue_speed_cost": (quantize.get("budget") or {}).get("speed_cost"),
                         "layer_sqnr": quantize.get("layer_sqnr")},
        "artifacts": artifacts,
        "recommended": recommended,
        "passed": recommended is not None,
        "inconclusive": inconclusive,
        "tools": tool_versions(*TOOLS),
        "folder": str(root),
    }


def _estimate_source(artifacts: list[dict[str, Any]]) -> str:
    """Where the estimates came from: a backend's own performance model (Vela) or published board measurements."""
    models = sorted({a["latency_estimate"]["source"] for a in artifacts
                     if "performance model" in a.get("latency_estimate", {}).get("source", "")})
    scaled = "estimated from published measurements of the board, scaled by MACs (see each artifact's basis)"
    return f"estimated by {', '.join(models)} (see each artifact's basis)" if models else scaled


def _data_record(data: dict[str, Any]) -> dict[str, Any]:
    """A data entry for the report; photo specs also name their package, seed and source photos."""
    if data["spec"].startswith("photos:"):
        from edgemb.data.photos import provenance

        return {**data, "photos": provenance(parse_spec(data["spec"]).location)}
    return data


def _parity_fields(p: dict[str, Any], task: Task) -> dict[str, Any]:
    """The parity numbers the report keeps for an artifact: the ones its task names."""
    return {k: p.get(k) for k in task.report_fields}


def _within_budget(entry: dict[str, Any], budget: Budget) -> tuple[str, str]:
    """PASS/FAIL/INCONCLUSIVE for an artifact: usable, and its parity (on this host, else on the device)
    within the budget."""
    parity_ = entry.get("parity")
    if entry.get("status") not in (OK, NEEDS_DEVICE) or parity_ is None:
        return FAIL, "not verified"
    if "profile_error" in entry:
        return FAIL, f"failed on the device: {entry['profile_error']}"
    return budget.judge(parity_)


def _recommend(artifacts: list[dict[str, Any]], budget: Budget, labelled: bool, metric: str = "top-1"
               ) -> dict[str, Any] | None:
    """The fastest artifact within the accuracy budget; timing ties go to fidelity, then size.

    An artifact slower than the fastest by no more than the fastest's measured spread (how far its repeated
    rounds typically land) is a tie: noise must not decide. A noisy challenger's own spread does not widen the
    band, so one disturbed measurement cannot win. Smallest within the budget when nothing could be timed.
    """
    candidates = [a for a in artifacts if a["within_budget"]]
    if not candidates:
        return None
    timed = [a for a in candidates if "latency" in a]
    estimated = [a for a in candidates if "latency_estimate" in a]
    tied: list[dict[str, Any]] = []
    estimate = None
    if timed:
        fastest = min(timed, key=lambda a: a["latency"]["p50_ms"])
        tied = [a for a in timed if a["latency"]["p50_ms"] - fastest["latency"]["p50_ms"] <= _spread(fastest)]
        best = min(tied, key=_fidelity_then_size)
        reason = f"fastest artifact within the accuracy budget ({budget.describe(labelled, metric)})"
        if len(tied) > 1:
            reason += (f"; {len(tied)} artifacts are within the timing spread of the fastest, so the most faithful "
                       "(agreement, then SQNR), then smallest, was chosen")
    elif estimated:
        best = min(estimated, key=lambda a: (a["latency_estimate"]["p50_ms"], _fidelity_then_size(a)))
        estimate = best["latency_estimate"]
        unranked = [f"{a['backend']} {a['precision']}" for a in candidates if "latency_estimate" not in a]
        reason = (f"fastest by ESTIMATED latency ({estimate['basis']}; source: {estimate['source']}) within the "
                  f"accuracy budget ({budget.describe(labelled, metric)}); no device timing: pass --device to measure")
        if unranked:
            reason += f"; not ranked (no published measurement for them on this board): {', '.join(unranked)}"
    else:
        best = min(candidates, key=lambda a: a["size_bytes"])
        reason = f"smallest within the accuracy budget ({budget.describe(labelled, metric)}; no device timing)"
    return {"backend": best["backend"], "precision": best["precision"], "path": best["path"],
            "p50_ms": best["latency"]["p50_ms"] if "latency" in best else estimate["p50_ms"] if estimate else None,
            "latency_kind": "measured" if "latency" in best else "estimated" if estimate else None,
            "spread_ms": _spread(best) if "latency" in best else None, "reason": reason,
            "tied_with": [f"{a['backend']} {a['precision']}" for a in tied if a is not best]}


def _spread(artifact: dict[str, Any]) -> float:
    """The latency difference its own repeats showed (0 when it was timed once)."""
    return float(artifact["latency"].get("spread_ms") or 0.0)


def _fidelity_then_size(artifact: dict[str, Any]) -> tuple[float, float, int]:
    """Sort key among timing ties: higher agreement, then higher SQNR, then fewer bytes."""
    p = artifact.get("parity") or {}
    sqnr = p.get("sqnr_db")
    return (-(p.get("agreement") or 0.0), -(min(sqnr, 1e9) if sqnr is not None else -1e9),
            artifact.get("size_bytes") or 0)

