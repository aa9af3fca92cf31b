"""Stage: int8 post-training quantization of a zoo model with calibration data, within an accuracy budget."""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from edgemb.artifacts import file_record, staged_output, tool_versions, write_json
from edgemb.budget import Budget
from edgemb.data import Data, load_data, parse_spec
from edgemb.errors import EdgembError
from edgemb.export import export_simplified
from edgemb.metrics import parity
from edgemb.onnx_graph import Graph, run_batched, session
from edgemb.quant.cle import equalize, weight_range_spread
from edgemb.quant.correction import correct_biases, rank_sensitivity
from edgemb.quant.qdq import QuantConfig, activation_tensors, build_qdq, layers
from edgemb.quant.ranges import DEFAULT_METHOD, METHODS, choose_range, collect_stats
from edgemb.zoo.weights import PreparedModel, prepare_model

GRANULARITIES = ("per-channel", "per-tensor")
ACTIVATION_TYPES = ("uint8", "int8")
BIAS_CORRECTION_SAMPLES = 128
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
    return {"spec": spec, "n": len(data), "constant_images": constant, "skipped": len(data.skipped)}


def _float_graph(prepared: PreparedModel, folder: Path) -> Graph:
    return Graph.load(export_simplified(prepared.model, prepared.spec.resolution, folder / "model.float.onnx"))


def _eval_parity(model, float_logits: np.ndarray, data: Data) -> dict[str, Any]:
    logits = run_batched(session(model), data.x, desc="eval int8")[0]
    return parity(float_logits, logits, data.y)


def quantize_model(model_name: str | PreparedModel, calib: str | Data, out_dir: Path, weights: str | None = None,
                   sha256: str | None = None, method: str = DEFAULT_METHOD, granularity: str = "per-channel",
                   cle: bool = False, bias_correction: bool = False, max_drop: float | None = None,
                   eval_spec: str | Data | None = None, activation_type: str = "uint8",
                   max_float_layers: int = DEFAULT_MAX_FLOAT_LAYERS, budget: Budget | None = None
                   ) -> dict[str, Any]:
    """Quantize to a QDQ int8 ONNX model; writes model.int8.onnx, model.float.onnx and quantize.json.

    A deploy passes its prepared model and loaded data; names are resolved here otherwise. The budget is
    `max_drop` top-1 points on labelled --eval data, or a full Budget (agreement/SQNR for unlabelled data).
    """
    if method not in METHODS:
        raise EdgembError(f"--method {method!r} is not one of {', '.join(METHODS)}")
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
    calibration = calib if isinstance(calib, Data) else load_data(calib, prepared.preprocessing)
    calib_report = check_calibration(calibration, calibration.source)
    evaluation = eval_spec if isinstance(eval_spec, Data) or eval_spec is None else \
        load_data(eval_spec, prepared.preprocessing)
    config = QuantConfig(method, granularity, activation_type)
    report: dict[str, Any] = {"stage": "quantize", "model": prepared.spec.name,
                              "weights": prepared.weights.source if prepared.weights else None,
                              "resolution": prepared.spec.resolution,
                              "preprocessing": prepared.preprocessing.to_dict(),
                              "settings": {"method": method, "granularity": granularity, "cle": cle,
                                           "bias_correction": bias_correction, "activation_type": activation_type,
                                           "weight_type": "int8 symmetric",
                                           "budget": budget.to_dict() if budget else None,
                                           "max_float_layers": max_float_layers},
                              "calibration": calib_report}
    with staged_output(out_dir) as stage:
        graph = _float_graph(prepared, stage)
        if cle:
            before = weight_range_spread(graph)
            graph, pairs = equalize(graph)
            graph.save(stage / "model.float.onnx")
            report["cle"] = {"pairs": pairs, "weight_range_spread_before": round(before, 3),
                             "weight_range_spread_after": round(weight_range_spread(graph), 3),
                             "float_function": "unchanged (Clip(0,6) rewritten as Relu + per-channel Min)"}
        names = activation_tensors(graph)
        stats = collect_stats(graph.model, calibration.x, names, histograms=method != "minmax")
        ranges = {name: choose_range(stats[name], method, activation_type) for name in names}
        if bias_correction:
            graph, corrected = correct_biases(graph, ranges, config, calibration.x[:BIAS_CORRECTION_SAMPLES])
            report["bias_correction"] = {"layers": len(corrected),
                                         "samples": min(len(calibration), BIAS_CORRECTION_SAMPLES),
                                         "largest_shift": max((c["max_abs_shift"] for c in corrected), default=0)}
        quantized = build_qdq(graph, ranges, config)
        if evaluation is not None:
            float_logits = prepared.float_logits(evaluation.x)
            result = _eval_parity(quantized, float_logits, evaluation)
            report["eval"] = {"spec": evaluation.source, **result}
            if budget is not None:
                quantized, report["budget"] = _fit_budget(graph, ranges, config, quantized, calibration,
                                                          evaluation, float_logits, result, budget,
                                                          max_float_layers)
                report["eval"] = {"spec": evaluation.source, **report["budget"]["final"]}
        _save(quantized, stage / "model.int8.onnx")
        report["layers"] = len(layers(graph))
        report["layers_kept_float"] = config.keep_float
        report["artifacts"] = [file_record(stage / n, stage) for n in ("model.int8.onnx", "model.float.onnx")]
        report["seconds"] = round(time.perf_counter() - started, 2)
        report["tools"] = tool_versions("torch", "onnx", "onnxsim", "onnxruntime")
        write_json(stage / "quantize.json", report)
    return report


def _fit_budget(graph: Graph, ranges, config: QuantConfig, quantized, calibration: Data, evaluation: Data,
                float_logits: np.ndarray, result: dict, budget: Budget, limit: int):
    """Keep the most sensitive layers in float, one at a time, until the result fits the budget or `limit`."""
    steps = [{"kept_float": [], **result}]
    ranking: list[dict] = []
    if not budget.met(result) and limit > 0:
        ranking = rank_sensitivity(graph, ranges, config, calibration.x[:SENSITIVITY_SAMPLES])
    for candidate in ranking[:limit]:
        if budget.met(result):
            break
        config.keep_float.append(candidate["layer"])
        quantized = build_qdq(graph, ranges, config)
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
