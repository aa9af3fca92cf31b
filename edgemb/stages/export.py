"""Stage 1: PyTorch -> ONNX -> simplified ONNX, with numerical proof that nothing changed on the way."""

from __future__ import annotations

import contextlib
import io
import logging
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgemb.artifacts import file_record, staged_output, tool_versions, write_json
from edgemb.errors import EdgembError
from edgemb.zoo import count_macs, count_params
from edgemb.zoo.prepared import PreparedModel, prepare_model
from edgemb.zoo.registry import ModelSpec

DEFAULT_OPSET = 18
MIN_OPSET = 13
MAX_ABS_DIFF = 1e-4
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


@dataclass
class ExportResult:
    """Where the stage wrote its files and what it measured."""

    out_dir: Path
    onnx_path: Path
    sim_path: Path
    report: dict[str, Any]

    @property
    def passed(self) -> bool:
        """True when the simplified model reproduces PyTorch within tolerance."""
        return bool(self.report["parity"]["passed"])


def export_onnx(model: nn.Module, resolution: int, path: Path, opset: int = DEFAULT_OPSET) -> None:
    """Export with a static 1x3xRxR input via torch.export (the maintained exporter), weights inline."""
    if opset < MIN_OPSET:
        raise EdgembError(f"--opset {opset} is too old: use {MIN_OPSET} or newer (default {DEFAULT_OPSET})")
    example = torch.zeros(1, 3, resolution, resolution)
    noisy = logging.getLogger("torch.onnx")
    previous = noisy.level
    noisy.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model.eval(), (example,), dynamo=True, opset_version=opset, input_names=[INPUT_NAME],
                output_names=output_names(model), external_data=False, verbose=False,
            )
        program.save(str(path), external_data=False)
    except Exception as exc:  # the exporter raises many internal types; name the stage and the cause
        raise EdgembError(f"ONNX export failed at opset {opset}: {exc}".splitlines()[0]) from exc
    finally:
        noisy.setLevel(previous)


def output_names(model: nn.Module) -> list[str]:
    """ONNX output names: `logits` for classifiers; detectors/segmenters name their raw head outputs."""
    return list(getattr(model, "output_names", (OUTPUT_NAME,)))


def simplify_onnx(src: Path, dst: Path) -> None:
    """Run onnxsim (constant folding, BN folding, dead-node removal) and the ONNX checker."""
    import onnx
    import onnxsim

    model = onnx.load(str(src))
    simplified, ok = onnxsim.simplify(model)
    if not ok:
        raise EdgembError(f"onnxsim could not validate the simplified form of {src}")
    onnx.checker.check_model(simplified, full_check=True)
    onnx.save(simplified, str(dst))


def export_simplified(model: nn.Module, resolution: int, path: Path, opset: int = DEFAULT_OPSET) -> Path:
    """Export and simplify in one step (the float graph every later stage starts from)."""
    raw = path.with_name(f".{path.stem}.raw.onnx")
    try:
        export_onnx(model, resolution, raw, opset)
        simplify_onnx(raw, path)
    finally:
        raw.unlink(missing_ok=True)
    return path


def op_histogram(path: Path) -> dict[str, int]:
    """How many nodes of each ONNX op type a graph holds (shows what simplification removed)."""
    import onnx

    return dict(sorted(Counter(node.op_type for node in onnx.load(str(path)).graph.node).items()))


def onnx_parity(model: nn.Module, onnx_path: Path, resolution: int, n: int = 8, seed: int = 0,
                inputs: np.ndarray | None = None) -> dict[str, Any]:
    """Compare onnxruntime's logits with PyTorch's on the same inputs: max |diff| and top-1 agreement."""
    import onnxruntime as ort

    if inputs is None:
        rng = np.random.default_rng(seed)
        inputs = rng.standard_normal((n, 3, resolution, resolution), dtype=np.float32)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    with torch.no_grad():
        out = model.eval()(torch.from_numpy(inputs))
    references = [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]  # every raw output
    runs = [session.run(None, {INPUT_NAME: x[None]}) for x in inputs]
    ours = [np.concatenate([run[k] for run in runs]) for k in range(len(references))]
    diffs = [float(np.max(np.abs(o - r))) for o, r in zip(ours, references, strict=True)]
    max_abs = max(diffs)
    result: dict[str, Any] = {"max_abs_diff": max_abs}
    if len(references) == 1 and references[0].ndim == 2:  # class logits
        result["top1_agreement"] = float(np.mean(ours[0].argmax(1) == references[0].argmax(1)))
    else:
        result["max_abs_diff_per_output"] = dict(zip(output_names(model), diffs, strict=True))
    return {**result, "n": len(inputs), "tolerance": MAX_ABS_DIFF, "passed": max_abs <= MAX_ABS_DIFF}


def export_model(spec: ModelSpec | PreparedModel, out_dir: Path, weights: str | None = None,
                 sha256: str | None = None, opset: int = DEFAULT_OPSET, parity_samples: int = 8) -> ExportResult:
    """Export, simplify and check one zoo model; writes model.onnx, model.sim.onnx and export.json."""
    if parity_samples < 1:
        raise EdgembError(f"parity sample count must be >= 1, got {parity_samples}")
    prepared = spec if isinstance(spec, PreparedModel) else prepare_model(spec, weights, sha256)
    spec, model, loaded = prepared.spec, prepared.model, prepared.weights
    started = time.perf_counter()
    with staged_output(out_dir) as stage:
        export_onnx(model, spec.resolution, stage / "model.onnx", opset)
        simplify_onnx(stage / "model.onnx", stage / "model.sim.onnx")
        parity = onnx_parity(model, stage / "model.sim.onnx", spec.resolution, parity_samples)
        before, after = op_histogram(stage / "model.onnx"), op_histogram(stage / "model.sim.onnx")
        report = {
            "stage": "export",
            "model": spec.name,
            "family": spec.info.title,
            "alpha": spec.alpha,
            "resolution": spec.resolution,
            "input": {"name": INPUT_NAME, "shape": [1, 3, spec.resolution, spec.resolution], "layout": "NCHW"},
            "num_classes": prepared.num_classes,
            "preprocessing": prepared.preprocessing.to_dict(),
            "params": count_params(model),
            "macs": count_macs(model, spec.resolution),
            "weights": {"source": loaded.source, "sha256": loaded.sha256} if loaded else None,
            "opset": opset,
            "nodes_before": sum(before.values()),
            "nodes_after": sum(after.values()),
            "ops_before": before,
            "ops_after": after,
            "parity": parity,
            "artifacts": [file_record(stage / "model.onnx", stage), file_record(stage / "model.sim.onnx", stage)],
            "seconds": round(time.perf_counter() - started, 2),
            "tools": tool_versions("torch", "onnx", "onnxsim", "onnxruntime"),
        }
        write_json(stage / "export.json", report)
    return ExportResult(out_dir, out_dir / "model.onnx", out_dir / "model.sim.onnx", report)
