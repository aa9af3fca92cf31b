"""Stage: int8 post-training quantization of a zoo model with calibration data, within an accuracy budget."""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgemb.artifacts import file_record, sha256_file, staged_output, tool_versions, write_json
from edgemb.budget import Budget, agreement_for_budget
from edgemb.data import Data, as_data, parse_spec
from edgemb.errors import EdgembError
from edgemb.metrics import outputs_sqnr_db
from edgemb.onnx_graph import Graph, run_batched, session
from edgemb.progress import StepTimes, progress
from edgemb.quant.act_equalization import equalize_activations
from edgemb.quant.cle import equalize, weight_range_spread
from edgemb.quant.correction import (
    correct_mean_shifts,
    qdq_session,
    rank_sensitivity,
    rank_wide_sensitivity,
    timed_run_all,
)
from edgemb.quant.isa import choose_scheme, host_scheme
from edgemb.quant.options import AUTO_METHOD, DEFAULT_SETTINGS, DEFAULT_WEIGHT_ROUNDING, QuantizeSettings
from edgemb.quant.qdq import QuantConfig, activation_tensors, build_qdq
from edgemb.quant.quantizable import layers
from edgemb.quant.ranges import TensorStats, choose_range, collect_stats
from edgemb.quant.refit import refit_layers
from edgemb.quant.rounding import RoundedLayer, round_layers
from edgemb.stages.export import export_simplified
from edgemb.tasks import Task, take, task_for
from edgemb.zoo.prepared import PreparedModel, prepare_model

BIAS_CORRECTION_SAMPLES = 128
AUTO_CANDIDATES = ("percentile", "mse")
RANGE_CHOICE_SAMPLES = 64
SENSITIVITY_SAMPLES = 64
WIDE_SENSITIVITY_SAMPLES = 32
DEFAULT_MAX_WIDE_TENSORS = 8  # activations the budget may raise to 16 bits before keeping layers in float
HELD_OUT_EVERY = 4  # with a budget, every 4th calibration sample is held out to decide the rescue on
EVAL_OUTPUTS = "eval.int8.npz"  # the final QDQ model's raw outputs on the evaluation samples
MAX_SAVED_OUTPUT_BYTES = 256 * 2**20


def check_calibration(data: Data, spec: str) -> dict[str, Any]:
    """Warn about calibration sets that would give degenerate ranges; returns what was found."""
    asked = parse_spec(spec).count
    flat = data.x.reshape(len(data), -1)
    constant = int(np.sum(flat.std(axis=1) == 0))
    if asked is not None and len(data) < asked:
        warnings.warn(f"calibration set {spec} gave {len(data)} samples, fewer than the {asked} asked "
                      f"({len(data.skipped)} unreadable)", stacklevel=2)
    if constant:
        warnings.warn(f"{constant} of {len(data)} calibration images are constant (e.g. all zero): "
                      "activation ranges from them are degenerate; use real images", stacklevel=2)
    from edgemb.calibration_check import calibration_warning

    report = {"spec": spec, "n": len(data), "constant_images": constant, "skipped": len(data.skipped)}
    too_few = calibration_warning(len(data), spec)
    return {**report, "warning": too_few} if too_few else report


def _float_graph(prepared: PreparedModel, folder: Path) -> Graph:
    return Graph.load(export_simplified(prepared.model, prepared.spec.resolution, folder / "model.float.onnx"))


def _eval_parity(model, float_outputs: list[np.ndarray], data: Data, task: Task, truth: Any,
                 desc: str = "eval int8") -> tuple[dict[str, Any], list[np.ndarray]]:
    """The task's parity of a quantized ONNX model against the float outputs (top-1, mAP or mIoU points), and
    the model's raw outputs it was judged on."""
    outputs = run_batched(session(model), data.x, desc=desc)
    return task.parity(float_outputs, outputs, truth), outputs


def samples_sha256(x: np.ndarray) -> str:
    """Fingerprint of an input batch: which samples, in which order, bit for bit."""
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(x, dtype=np.float32).tobytes()).hexdigest()


def eval_outputs_path(qdq_model: Path) -> Path:
    """Where the quantize stage keeps its QDQ model's outputs on the evaluation samples, beside the model."""
    return Path(qdq_model).with_name(EVAL_OUTPUTS)


def save_eval_outputs(stage: Path, x: np.ndarray, outputs: list[np.ndarray]) -> None:
    """Keep the final model's evaluation outputs, unless they are too big to be worth a file (a segmenter's
    masks over a large set): compile then verifies the same bytes on the same samples without running them again."""
    if sum(o.nbytes for o in outputs) > MAX_SAVED_OUTPUT_BYTES:
        return
    np.savez(stage / EVAL_OUTPUTS, model_sha256=np.array(sha256_file(stage / "model.int8.onnx")),
             samples_sha256=np.array(samples_sha256(x)), onnxruntime=np.array(_onnxruntime_version()),
             **{f"output_{k}": o for k, o in enumerate(outputs)})


def _onnxruntime_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def saved_eval_outputs(qdq_model: Path | None, artifact: Path, x: np.ndarray) -> list[np.ndarray] | None:
    """The quantize stage's outputs of `artifact` on `x`, when the artifact is its QDQ model byte for byte and
    `x` the very samples it was evaluated on, by this onnxruntime (which runs that model either way: its int8
    kernels sum in int32, so the thread count changes nothing); None otherwise."""
    if qdq_model is None or not eval_outputs_path(qdq_model).is_file() or artifact.suffix != ".onnx":
        return None
    with np.load(eval_outputs_path(qdq_model)) as saved:
        if "onnxruntime" not in saved.files or str(saved["onnxruntime"]) != _onnxruntime_version():
            return None
        if str(saved["model_sha256"]) != sha256_file(artifact) or str(saved["samples_sha256"]) != samples_sha256(x):
            return None
        return [saved[f"output_{k}"] for k in range(sum(name.startswith("output_") for name in saved.files))]


def held_out_index(n: int, every: int = HELD_OUT_EVERY) -> np.ndarray:
    """Which of n calibration samples split_calibration holds out (every `every`-th)."""
    return np.arange(n)[every - 1::every]


def split_calibration(data: Data, every: int = HELD_OUT_EVERY) -> tuple[Data, Data]:
    """Calibration samples to fit ranges and rounding on, and every `every`-th one held out to decide on."""
    keep = np.ones(len(data), bool)
    keep[held_out_index(len(data), every)] = False
    if keep.all() or not keep.any():
        raise EdgembError(f"calibration set {data.source} has {len(data)} samples: an accuracy budget needs at "
                          f"least {every} (every {every}th is held out to choose the rescue on)")

    def part(mask: np.ndarray, name: str) -> Data:
        return Data(data.x[mask], None if data.y is None else data.y[mask], f"{data.source} ({name})",
                    data.classes)

    return part(keep, "fit"), part(~keep, "held out")


def quantize_model(model_name: str | PreparedModel, calib: str | Data, out_dir: Path, weights: str | None = None,
                   sha256: str | None = None, settings: QuantizeSettings = DEFAULT_SETTINGS,
                   eval_spec: str | Data | None = None, budget: Budget | None = None,
                   isa: Sequence[str] | None = None, arch: str = "x86_64") -> dict[str, Any]:
    """Quantize to a QDQ int8 ONNX model; writes model.int8.onnx, model.float.onnx, quantize.json (and with
    evaluation data eval.int8.npz, the int8 model's outputs on it, which compile reuses).

    A deploy passes its prepared model and loaded data; names are resolved here otherwise. `settings` says how
    to quantize (edgemb/quant/options.py, checked when it is built). The accuracy `budget` (top-1 points on
    labelled --eval data, or agreement/SQNR for unlabelled data) is met by raising activations to 16 bits and
    keeping up to `settings.max_float_layers` layers in float. `isa`/`arch` name the target whose integer
    kernels run the model (default: this host); the int8 scheme they compute exactly is chosen from them
    (edgemb/quant/isa.py) and recorded under "isa".
    """
    if budget is not None and eval_spec is None:
        raise EdgembError("an accuracy budget (--max-drop) needs --eval SPEC: it is measured on evaluation data")
    started = time.perf_counter()
    prepared = model_name if isinstance(model_name, PreparedModel) else prepare_model(model_name, weights, sha256)
    calibration = as_data(calib, prepared.preprocessing)
    calib_report = check_calibration(calibration, calibration.source)
    evaluation = as_data(eval_spec, prepared.preprocessing)
    held_out = held_out_truth = None
    task = task_for(prepared.spec, prepared.num_classes)  # whose parity judges the budget, in its points
    if budget is not None:  # the rescue is chosen on held-out calibration samples, never on --eval
        calibration_truth = task.truth(calibration, prepared.preprocessing)  # labels, boxes or masks if known
        calibration, held_out = split_calibration(calibration)
        held_out_truth = take(calibration_truth, held_out_index(len(calibration) + len(held_out)))
        calib_report = {**calib_report, "fit": len(calibration), "held_out": len(held_out)}
    scheme = host_scheme() if isa is None else choose_scheme(isa, arch)
    config = QuantConfig(settings.method, settings.granularity, settings.activation_type, weight_max=scheme.weight_max)
    report: dict[str, Any] = {"stage": "quantize", "model": prepared.spec.name,
                              "weights": prepared.weights.source if prepared.weights else None,
                              "resolution": prepared.spec.resolution,
                              "preprocessing": prepared.preprocessing.to_dict(),
                              "settings": {"method": settings.method, "granularity": settings.granularity,
                                           "cle": settings.cle, "bias_correction": settings.bias_correction,
                                           "activation_type": settings.activation_type,
                                           "weight_type": f"int8 symmetric [-{scheme.weight_max}, {scheme.weight_max}]",
                                           "weight_rounding": settings.weight_rounding, "refit": settings.refit,
                                           "act_equalization": settings.act_equalization,
                                           "budget": budget.to_dict() if budget else None,
                                           "max_float_layers": settings.max_float_layers},
                              "isa": scheme.to_dict(), "calibration": calib_report}
    with staged_output(out_dir) as stage:
        steps = StepTimes()
        graph = _float_graph(prepared, stage)
        steps.mark("export")
        if settings.cle:
            before = weight_range_spread(graph)
            equalized, pairs = equalize(graph)
            gate = gate_rewrite(graph, equalized, config, calibration.x[:RANGE_CHOICE_SAMPLES],
                                weight_rounding=settings.weight_rounding)
            if gate["applied"]:
                graph = equalized
                graph.save(stage / "model.float.onnx")
            steps.mark("cle")
            report["cle"] = {"pairs": pairs, "weight_range_spread_before": round(before, 3),
                             "weight_range_spread_after": round(weight_range_spread(equalized), 3),
                             "float_function": "unchanged (Clip(0,6) rewritten as Relu + per-channel Min)", **gate}
        if settings.act_equalization:
            equalized, done = equalize_activations(graph, calibration.x)
            gate = gate_rewrite(graph, equalized, config, calibration.x[:RANGE_CHOICE_SAMPLES],
                                "activation equalization", settings.weight_rounding)
            if gate["applied"]:
                graph = equalized
                graph.save(stage / "model.float.onnx")
            report["act_equalization"] = {**done, "check": gate, "applied": gate["applied"]}
            steps.mark("activation equalization")
        names = activation_tensors(graph)
        stats = collect_stats(graph.model, calibration.x, names, histograms=settings.method != "minmax")
        steps.mark("activation ranges")
        rounded = (round_layers(graph, calibration.x, config.per_channel, config.weight_max)
                   if settings.weight_rounding == "gptq" else None)
        steps.mark("weight rounding")
        if rounded:
            report["weight_rounding"] = {"layers": len(rounded), "layer_output_sqnr_db": {
                name: r.output_sqnr_db for name, r in rounded.items()}}
        ranges, report["ranges"] = pick_ranges(graph, stats, names, config, rounded,
                                               calibration.x[:RANGE_CHOICE_SAMPLES])
        steps.mark("range choice")
        if settings.refit and rounded and config.per_channel:
            rounded, report["refit"] = refit_layers(graph, ranges, config, rounded, calibration.x)
        elif settings.refit:
            report["refit"] = {"applied": False, "reason": "refit works on GPTQ's per-channel weights "
                                                           "(--weight-rounding gptq, --granularity per-channel)"}
        steps.mark("refit")
        config.wide_ranges = {n: choose_range(stats[n], "minmax") for n in names}
        if settings.bias_correction:
            graph, corrected = correct_mean_shifts(graph, ranges, config, calibration.x[:BIAS_CORRECTION_SAMPLES],
                                                   rounded)
            report["bias_correction"] = {"layers": len(corrected),
                                         "applied": sum(c["applied"] for c in corrected),
                                         "samples": min(len(calibration), BIAS_CORRECTION_SAMPLES),
                                         "per_layer": corrected}
        quantized = build_qdq(graph, ranges, config, rounded)
        steps.mark("bias correction and QDQ graph")
        if budget is not None and held_out is not None:
            quantized, report["budget"] = _fit_budget(graph, ranges, config, quantized, calibration, held_out,
                                                      budget, settings.max_float_layers, rounded, task=task,
                                                      held_out_truth=held_out_truth)
            steps.mark("budget rescue")
        if evaluation is not None:
            float_outputs = prepared.float_outputs(evaluation.x)
            result, eval_outputs = _eval_parity(quantized, float_outputs, evaluation, task,
                                                task.truth(evaluation, prepared.preprocessing))
            report["eval"] = {"spec": evaluation.source, **result}
            if budget is not None:
                met, verdict = budget.verdict(result)
                report["budget"].update(met=met, verdict=verdict, labelled=evaluation.y is not None, final=result)
            steps.mark("evaluation")
        _save(quantized, stage / "model.int8.onnx")
        if evaluation is not None:
            save_eval_outputs(stage, evaluation.x, eval_outputs)
        report["layers"] = len(layers(graph))
        report["layers_kept_float"] = config.keep_float
        report["activations_16bit"] = config.wide_tensors
        report["layers_16bit_input"] = sorted({name for name, node in layers(graph) if
                                               node.input[0] in config.wide_tensors and name not in config.keep_float})
        report["artifacts"] = [file_record(stage / n, stage) for n in ("model.int8.onnx", "model.float.onnx")]
        report["seconds"] = round(time.perf_counter() - started, 2)
        report["step_seconds"] = steps.seconds
        report["tools"] = tool_versions("torch", "onnx", "onnxsim", "onnxruntime")
        write_json(stage / "quantize.json", report)
    return report


def gate_rewrite(graph: Graph, rewritten: Graph, config: QuantConfig, x: np.ndarray, what: str = "CLE",
                 weight_rounding: str = DEFAULT_WEIGHT_ROUNDING) -> dict[str, Any]:
    """Whether a rewrite (CLE, activation equalization) raises the quantized model's SQNR over every graph output
    (`outputs_sqnr_db`: a classifier's logits, a detector's scores and boxes) against the original float graph.
    Ranges and weight rounding are fitted on the even calibration samples and the SQNR measured on the odd
    ones; under `auto` each graph is scored with its better range candidate. The weights are rounded as
    the stage will round them: activation equalization moves difficulty into dense weights, which GPTQ absorbs
    and plain rounding does not (V2@224: 16.5 -> 16.4 dB with plain rounding, 18.5 -> 20.0 with GPTQ)."""
    fit, held_out = x[0::2], x[1::2]
    methods = AUTO_CANDIDATES if config.method == AUTO_METHOD else (config.method,)
    reference = run_batched(qdq_session(graph.model), held_out, desc=f"{what} check (float)")
    scores = []
    for candidate in (graph, rewritten):
        names = activation_tensors(candidate)
        stats = collect_stats(candidate.model, fit, names, histograms=methods != ("minmax",))
        rounded = (round_layers(candidate, fit, config.per_channel, config.weight_max)
                   if weight_rounding == "gptq" else None)
        best = -np.inf
        for method in methods:
            ranges = {n: choose_range(stats[n], method, config.activation_type) for n in names}
            outputs = run_batched(qdq_session(build_qdq(candidate, ranges, config, rounded)), held_out,
                                  desc=f"{what} check")
            best = max(best, outputs_sqnr_db(reference, outputs))
        scores.append(round(best, 3))
    applied = scores[1] > scores[0]
    return {"applied": applied, "held_out_sqnr_db": {"without": scores[0], "with": scores[1]},
            "weight_rounding": weight_rounding, "samples": {"fit": len(fit), "held_out": len(held_out)},
            "reason": "raises held-out calibration SQNR" if applied else "lowers held-out calibration SQNR: skipped"}


def pick_ranges(graph: Graph, stats: dict[str, TensorStats], names: list[str], config: QuantConfig,
                rounded: dict[str, RoundedLayer] | None, x: np.ndarray) -> tuple[dict, dict[str, Any]]:
    """Activation ranges of the configured method; `auto` keeps the candidate with the best SQNR over every graph
    output (`outputs_sqnr_db`) on calibration samples (no one method wins everywhere: percentile on ImageNet V2,
    mse on Fashion-MNIST)."""
    candidates = AUTO_CANDIDATES if config.method == AUTO_METHOD else (config.method,)
    options = {m: {n: choose_range(stats[n], m, config.activation_type) for n in names} for m in candidates}
    if len(options) == 1:
        return options[config.method], {"method": config.method}
    reference = run_batched(qdq_session(graph.model), x, desc="range choice (float)")
    scores = {m: round(outputs_sqnr_db(reference, run_batched(qdq_session(build_qdq(graph, r, config, rounded)),
                                                              x, desc=f"range choice ({m})")), 3)
              for m, r in options.items()}
    best = max(scores, key=lambda m: scores[m])
    return options[best], {"method": best, "calibration_sqnr_db": scores, "samples": len(x)}


def for_choice(result: dict[str, Any], budget_drop: float | None = None) -> dict[str, Any]:
    """A held-out parity result as the rescue chooses on it: the label-free point estimate of the drop, whenever
    there is one, even on labelled samples.

    The held-out part is a quarter of the calibration set (75 crops at 224, 128 Fashion-MNIST images): an
    interval on so few samples straddles any useful budget, so choosing on it would run the whole rescue ladder
    every time; and a measured drop moves in whole label flips (0.78 points per flip on 128 samples). Measured:
    the Fashion-MNIST v2_1.0 reference raised two activations to 16 bits on one flip (held-out drop 0.78), which
    doubled its onnxruntime int8 time (0.21 -> 0.46 ms) and made TVM int8 8x slower, while its drop on the
    10,000 test images was -0.03. The estimate (edgemb.metrics.estimated_drop) averages the float model's
    probabilities, so it moves smoothly with the model. The choice uses the point; the proof (labels or the
    whole interval) is made on the evaluation set, which the choice never saw. Labels still decide when they miss
    the budget (`budget_drop`) by more than one flip, and an undecided estimate stays undecided.
    """
    if result.get("est_drop") is None or _undecided(result) or _labels_clearly_over(budget_drop, result):
        return result
    view = {k: v for k, v in result.items() if k != "drop"}
    return {**view, "est_drop_low": result["est_drop"], "est_drop_high": result["est_drop"]}


def _undecided(result: dict[str, Any]) -> bool:
    """A decoding task with nothing to compare marks its estimate [0, 100]: undecided, never a pass."""
    return result["est_drop_high"] - result["est_drop_low"] >= 100.0


def _labels_clearly_over(max_drop: float | None, result: dict[str, Any]) -> bool:
    """Measured labels beat the estimate when they miss the budget by more than one flipped label (100/n points):
    a large labelled set that loses 3 points is rescued, whatever the float model's probabilities say."""
    if max_drop is None or result.get("drop") is None or not result.get("n"):
        return False
    return result["drop"] - 100.0 / result["n"] > max_drop


def meets_on_held_out(budget: Budget, result: dict[str, Any]) -> bool:
    """Whether a step meets the budget on held-out calibration samples, judged as `for_choice` says."""
    return budget.met(for_choice(result, budget.max_drop))


def _score(budget: Budget, result: dict[str, Any]) -> tuple:
    """How good one measured step is for the budget: meeting it first, then its deciding number, then SQNR."""
    view = for_choice(result, budget.max_drop)
    if view.get("drop") is not None and budget.max_drop is not None:
        main = -view["drop"]
    elif view.get("est_drop") is not None and budget.max_drop is not None:
        main = -view["est_drop"]
    else:
        main = agreement_for_budget(view)[0]
    return budget.met(view), main, view["sqnr_db"]


def _decided_on(budget: Budget, result: dict[str, Any]) -> str:
    """What the held-out choice was judged on, for the report."""
    if budget.max_drop is None:
        return "agreement / SQNR limits"
    view = for_choice(result, budget.max_drop)
    return "measured drop (labels)" if view.get("drop") is not None else "estimated drop (point)"


def best_step(budget: Budget, steps: list[dict[str, Any]]) -> int:
    """Index of the step to ship: the best score, the earliest (fewest raised layers) among equals."""
    return max(range(len(steps)), key=lambda i: (_score(budget, steps[i]), -i))


def _fit_budget(graph: Graph, ranges, config: QuantConfig, quantized, fit: Data, held_out: Data, budget: Budget,
                limit: int, rounded: dict[str, RoundedLayer] | None = None,
                wide_limit: int = DEFAULT_MAX_WIDE_TENSORS, task: Task | None = None, held_out_truth: Any = None):
    """Rescue the most sensitive spots until held-out calibration samples meet the budget: first 16-bit
    activations (int8 weights stay), one tensor at a time, then layers kept in float; every step is measured
    with the target's integer kernels on the held-out samples, and the best step is shipped (the first that
    meets the budget, else the best measured trade-off, never simply the last attempt)."""
    if task is None:  # a classifier's logits, judged on the held-out labels when there are any
        from edgemb.tasks import ClassificationTask

        task, held_out_truth = ClassificationTask(0), held_out.y
    reference, float_ms = timed_run_all(graph.model, held_out.x, "held-out (float)")
    logits, ms = timed_run_all(quantized, held_out.x, "held-out int8")
    result = task.parity(reference, logits, held_out_truth)
    steps = [{"raised_16bit": [], "kept_float": [], **result}]
    steps_ms = [ms]  # kept apart from the steps: a timing must not make two identical choices look different
    wide_ranking: list[dict] = []
    float_ranking: list[dict] = []
    ladder: list[tuple[str, str]] = []
    if not meets_on_held_out(budget, result):
        x = fit.x[:WIDE_SENSITIVITY_SAMPLES]
        wide_ranking = rank_wide_sensitivity(graph, ranges, config, x, rounded) if wide_limit > 0 else []
        float_ranking = (rank_sensitivity(graph, ranges, config, fit.x[:SENSITIVITY_SAMPLES], rounded)
                         if limit > 0 else [])
        ladder = ([("16bit", r["tensor"]) for r in wide_ranking if r["sqnr_gain_db"] > 0][:wide_limit]
                  + [("float", r["layer"]) for r in float_ranking][:limit])
    for kind, name in progress(ladder, desc="budget rescue", unit="step"):
        if meets_on_held_out(budget, result):
            break
        (config.wide_tensors if kind == "16bit" else config.keep_float).append(name)
        model = build_qdq(graph, ranges, config, rounded)
        logits, ms = timed_run_all(model, held_out.x, f"held-out ({name})")
        result = task.parity(reference, logits, held_out_truth)
        steps.append({"raised_16bit": list(config.wide_tensors), "kept_float": list(config.keep_float), **result})
        steps_ms.append(ms)
    best = best_step(budget, steps)
    config.wide_tensors[:] = steps[best]["raised_16bit"]
    config.keep_float[:] = steps[best]["kept_float"]
    if len(steps) > 1:  # the last step's model is already built; another step is built again
        quantized = model if best == len(steps) - 1 else build_qdq(graph, ranges, config, rounded)
    met, verdict = budget.verdict(for_choice(steps[best], budget.max_drop))
    summary = {**budget.to_dict(), "chosen_on": held_out.source, "held_out_samples": len(held_out),
               "held_out_met": met, "held_out_verdict": verdict,
               "held_out_decided_on": _decided_on(budget, steps[best]), "chosen_step": best,
               "sensitivity": float_ranking, "sensitivity_16bit": wide_ranking, "steps": steps,
               "held_out": steps[best], "steps_host_ms": [round(t, 3) for t in steps_ms],
               "speed_cost": speed_cost(steps_ms[0], steps_ms[best], float_ms)}
    return quantized, summary


def speed_cost(int8_ms: float, chosen_ms: float, float_ms: float) -> dict[str, Any]:
    """What the rescue costs in speed, measured on this host with onnxruntime (median per sample, held-out
    run): the target's own runtime may differ, and the deploy measures or estimates the artifact itself."""
    return {"int8_ms": round(int8_ms, 3), "chosen_ms": round(chosen_ms, 3), "float_ms": round(float_ms, 3),
            "added_ms": round(chosen_ms - int8_ms, 3),
            "added_percent": round(100.0 * (chosen_ms - int8_ms) / int8_ms, 1) if int8_ms > 0 else None,
            "measured_with": "onnxruntime on this host, batch 1, median over the held-out samples"}


def _save(model, path: Path) -> None:
    import onnx

    onnx.checker.check_model(model)
    onnx.save(model, str(path))
