"""Stage: int8 post-training quantization of a zoo model with calibration data, within an accuracy budget."""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgemb.artifacts import file_record, staged_output, tool_versions, write_json
from edgemb.budget import Budget
from edgemb.data import Data, as_data, parse_spec
from edgemb.errors import EdgembError
from edgemb.export import export_simplified
from edgemb.metrics import parity, sqnr_db
from edgemb.onnx_graph import Graph, run_batched, session
from edgemb.quant.cle import equalize, weight_range_spread
from edgemb.quant.correction import correct_mean_shifts, qdq_session, rank_sensitivity
from edgemb.quant.isa import choose_scheme, host_scheme
from edgemb.quant.qdq import QuantConfig, activation_tensors, build_qdq, layers
from edgemb.quant.ranges import METHODS, TensorStats, choose_range, collect_stats
from edgemb.quant.rounding import RoundedLayer, round_layers
from edgemb.zoo.weights import PreparedModel, prepare_model

GRANULARITIES = ("per-channel", "per-tensor")
ACTIVATION_TYPES = ("uint8", "int8")
BIAS_CORRECTION_SAMPLES = 128
AUTO_METHOD = "auto"
DEFAULT_METHOD = AUTO_METHOD
AUTO_CANDIDATES = ("percentile", "mse")
RANGE_CHOICE_SAMPLES = 64
WEIGHT_ROUNDINGS = ("gptq", "nearest")
SENSITIVITY_SAMPLES = 64
DEFAULT_MAX_FLOAT_LAYERS = 6


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


def _eval_parity(model, float_logits: np.ndarray, data: Data) -> dict[str, Any]:
    logits = run_batched(session(model), data.x, desc="eval int8")[0]
    return parity(float_logits, logits, data.y)


def quantize_model(model_name: str | PreparedModel, calib: str | Data, out_dir: Path, weights: str | None = None,
                   sha256: str | None = None, method: str = DEFAULT_METHOD, granularity: str = "per-channel",
                   cle: bool = False, bias_correction: bool = False, max_drop: float | None = None,
                   eval_spec: str | Data | None = None, activation_type: str = "uint8",
                   max_float_layers: int = DEFAULT_MAX_FLOAT_LAYERS, budget: Budget | None = None,
                   weight_rounding: str = "gptq", isa: Sequence[str] | None = None, arch: str = "x86_64"
                   ) -> dict[str, Any]:
    """Quantize to a QDQ int8 ONNX model; writes model.int8.onnx, model.float.onnx and quantize.json.

    A deploy passes its prepared model and loaded data; names are resolved here otherwise. The budget is
    `max_drop` top-1 points on labelled --eval data, or a full Budget (agreement/SQNR for unlabelled data).
    `isa`/`arch` name the target whose integer kernels run the model (default: this host); the int8 scheme
    they compute exactly is chosen from them (edgemb/quant/isa.py) and recorded under "isa".
    """
    if method not in (*METHODS, AUTO_METHOD):
        raise EdgembError(f"--method {method!r} is not one of {', '.join((AUTO_METHOD, *METHODS))}")
    if weight_rounding not in WEIGHT_ROUNDINGS:
        raise EdgembError(f"--weight-rounding {weight_rounding!r} is not one of {', '.join(WEIGHT_ROUNDINGS)}")
    if granularity not in GRANULARITIES:
        raise EdgembError(f"--granularity {granularity!r} is not one of {', '.join(GRANULARITIES)}")
    if activation_type not in ACTIVATION_TYPES:
        raise EdgembError(f"--activation-type {activation_type!r} is not one of {', '.join(ACTIVATION_TYPES)}")
    if max_float_layers < 0:
        raise EdgembError(f"--max-float-layers must be >= 0, got {max_float_layers}")
    if budget is None and max_drop is not None:
        budget = Budget(max_drop=max_drop)
    if budget is not None and eval_spec is None:
        raise EdgembError("an accuracy budget (--max-drop) needs --eval SPEC: it is measured on evaluation data")
    started = time.perf_counter()
    prepared = model_name if isinstance(model_name, PreparedModel) else prepare_model(model_name, weights, sha256)
    calibration = as_data(calib, prepared.preprocessing)
    calib_report = check_calibration(calibration, calibration.source)
    evaluation = as_data(eval_spec, prepared.preprocessing)
    scheme = host_scheme() if isa is None else choose_scheme(isa, arch)
    config = QuantConfig(method, granularity, activation_type, weight_max=scheme.weight_max)
    report: dict[str, Any] = {"stage": "quantize", "model": prepared.spec.name,
                              "weights": prepared.weights.source if prepared.weights else None,
                              "resolution": prepared.spec.resolution,
                              "preprocessing": prepared.preprocessing.to_dict(),
                              "settings": {"method": method, "granularity": granularity, "cle": cle,
                                           "bias_correction": bias_correction, "activation_type": activation_type,
                                           "weight_type": f"int8 symmetric [-{scheme.weight_max}, {scheme.weight_max}]",
                                           "weight_rounding": weight_rounding,
                                           "budget": budget.to_dict() if budget else None,
                                           "max_float_layers": max_float_layers},
                              "isa": scheme.to_dict(), "calibration": calib_report}
    with staged_output(out_dir) as stage:
        graph = _float_graph(prepared, stage)
        if cle:
            before = weight_range_spread(graph)
            equalized, pairs = equalize(graph)
            gate = gate_rewrite(graph, equalized, config, calibration.x[:RANGE_CHOICE_SAMPLES])
            if gate["applied"]:
                graph = equalized
                graph.save(stage / "model.float.onnx")
            report["cle"] = {"pairs": pairs, "weight_range_spread_before": round(before, 3),
                             "weight_range_spread_after": round(weight_range_spread(equalized), 3),
                             "float_function": "unchanged (Clip(0,6) rewritten as Relu + per-channel Min)", **gate}
        names = activation_tensors(graph)
        stats = collect_stats(graph.model, calibration.x, names, histograms=method != "minmax")
        rounded = (round_layers(graph, calibration.x, config.per_channel, config.weight_max)
                   if weight_rounding == "gptq" else None)
        if rounded:
            report["weight_rounding"] = {"layers": len(rounded), "layer_output_sqnr_db": {
                name: r.output_sqnr_db for name, r in rounded.items()}}
        ranges, report["ranges"] = pick_ranges(graph, stats, names, config, rounded,
                                               calibration.x[:RANGE_CHOICE_SAMPLES])
        if bias_correction:
            graph, corrected = correct_mean_shifts(graph, ranges, config, calibration.x[:BIAS_CORRECTION_SAMPLES],
                                                   rounded)
            report["bias_correction"] = {"layers": len(corrected),
                                         "applied": sum(c["applied"] for c in corrected),
                                         "samples": min(len(calibration), BIAS_CORRECTION_SAMPLES),
                                         "per_layer": corrected}
        quantized = build_qdq(graph, ranges, config, rounded)
        if evaluation is not None:
            float_logits = prepared.float_logits(evaluation.x)
            result = _eval_parity(quantized, float_logits, evaluation)
            report["eval"] = {"spec": evaluation.source, **result}
            if budget is not None:
                quantized, report["budget"] = _fit_budget(graph, ranges, config, quantized, calibration,
                                                          evaluation, float_logits, result, budget,
                                                          max_float_layers, rounded)
                report["eval"] = {"spec": evaluation.source, **report["budget"]["final"]}
        _save(quantized, stage / "model.int8.onnx")
        report["layers"] = len(layers(graph))
        report["layers_kept_float"] = config.keep_float
        report["artifacts"] = [file_record(stage / n, stage) for n in ("model.int8.onnx", "model.float.onnx")]
        report["seconds"] = round(time.perf_counter() - started, 2)
        report["tools"] = tool_versions("torch", "onnx", "onnxsim", "onnxruntime")
        write_json(stage / "quantize.json", report)
    return report


def gate_rewrite(graph: Graph, rewritten: Graph, config: QuantConfig, x: np.ndarray) -> dict[str, Any]:
    """Whether a function-preserving rewrite (CLE) raises the quantized logits' SQNR: ranges are fitted on the
    even calibration samples and the SQNR measured on the odd ones, with plain rounding for both graphs."""
    fit, held_out = x[0::2], x[1::2]
    method = "mse" if config.method == AUTO_METHOD else config.method
    reference = run_batched(qdq_session(graph.model), held_out, desc="CLE check (float)")[0]
    scores = []
    for candidate in (graph, rewritten):
        names = activation_tensors(candidate)
        stats = collect_stats(candidate.model, fit, names, histograms=method != "minmax")
        ranges = {n: choose_range(stats[n], method, config.activation_type) for n in names}
        logits = run_batched(qdq_session(build_qdq(candidate, ranges, config)), held_out, desc="CLE check")[0]
        scores.append(round(sqnr_db(reference, logits), 3))
    applied = scores[1] > scores[0]
    return {"applied": applied, "held_out_sqnr_db": {"without": scores[0], "with": scores[1]},
            "reason": "raises held-out calibration SQNR" if applied else "lowers held-out calibration SQNR: skipped"}


def pick_ranges(graph: Graph, stats: dict[str, TensorStats], names: list[str], config: QuantConfig,
                rounded: dict[str, RoundedLayer] | None, x: np.ndarray) -> tuple[dict, dict[str, Any]]:
    """Activation ranges of the configured method; `auto` keeps the candidate with the best logits SQNR on
    calibration samples (no one method wins everywhere: percentile on ImageNet V2, mse on Fashion-MNIST)."""
    candidates = AUTO_CANDIDATES if config.method == AUTO_METHOD else (config.method,)
    options = {m: {n: choose_range(stats[n], m, config.activation_type) for n in names} for m in candidates}
    if len(options) == 1:
        return options[config.method], {"method": config.method}
    reference = run_batched(qdq_session(graph.model), x, desc="range choice (float)")[0]
    scores = {m: round(sqnr_db(reference, run_batched(qdq_session(build_qdq(graph, r, config, rounded)), x,
                                                       desc=f"range choice ({m})")[0]), 3)
              for m, r in options.items()}
    best = max(scores, key=lambda m: scores[m])
    return options[best], {"method": best, "calibration_sqnr_db": scores, "samples": len(x)}


def _fit_budget(graph: Graph, ranges, config: QuantConfig, quantized, calibration: Data, evaluation: Data,
                float_logits: np.ndarray, result: dict, budget: Budget, limit: int,
                rounded: dict[str, RoundedLayer] | None = None):
    """Keep the most sensitive layers in float, one at a time, until the result fits the budget or `limit`."""
    steps = [{"kept_float": [], **result}]
    ranking: list[dict] = []
    if not budget.met(result) and limit > 0:
        ranking = rank_sensitivity(graph, ranges, config, calibration.x[:SENSITIVITY_SAMPLES], rounded)
    for candidate in ranking[:limit]:
        if budget.met(result):
            break
        config.keep_float.append(candidate["layer"])
        quantized = build_qdq(graph, ranges, config, rounded)
        result = _eval_parity(quantized, float_logits, evaluation)
        steps.append({"kept_float": list(config.keep_float), **result})
    met, verdict = budget.verdict(result)
    summary = {**budget.to_dict(), "met": met, "verdict": verdict, "labelled": evaluation.y is not None,
               "sensitivity": ranking, "steps": steps, "final": result}
    return quantized, summary


def _save(model, path: Path) -> None:
    import onnx

    onnx.checker.check_model(model)
    onnx.save(model, str(path))
