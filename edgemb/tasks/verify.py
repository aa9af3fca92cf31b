"""Task-aware parity of every artifact a backend builds for a detector or segmenter, against the float model.

The backends stay task-blind: they build from the float ONNX and the calibration batch and return the raw
outputs (`run_all`). This module decodes those outputs with the task's one host-side implementation and
scores them: mAP/mIoU against ground truth (synthetic data), the drop in points against the float PyTorch
model, direct agreement with the float boxes/masks, and the SQNR of each raw output. Network latency and
post-processing latency are measured separately.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgemb.artifacts import staged_output, tool_versions, write_json
from edgemb.backends import BACKENDS, BuildInputs
from edgemb.backends.base import OK, needs_qdq_model
from edgemb.data import load_data
from edgemb.errors import EdgembError, ParityError
from edgemb.hostinfo import host_cpu
from edgemb.stages.export import export_simplified
from edgemb.stages.quantize import quantize_model
from edgemb.targets import get_target
from edgemb.tasks import task_for, task_parity, torch_outputs
from edgemb.tasks.detection import Detections
from edgemb.tasks.render import comparison_page
from edgemb.zoo.prepared import prepare_model

DEFAULT_ARTIFACTS = (("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("openvino", "fp32"), ("openvino", "int8"))
LATENCY_SAMPLES = 20
SHOWN_IMAGES = 4  # drawn in task_report.html


def _median_ms(fn, items: Sequence[Any]) -> float:
    times = []
    for item in items:
        start = time.perf_counter()
        fn(item)
        times.append(1000.0 * (time.perf_counter() - start))
    return round(statistics.median(times), 3)


def _unnormalize(x: np.ndarray, pp: Any) -> np.ndarray:
    """A preprocessed CHW sample back to uint8 HWC pixels for drawing."""
    pixels = x.transpose(1, 2, 0) * np.asarray(pp.std, np.float32) + np.asarray(pp.mean, np.float32)
    return (np.clip(pixels, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def verify_task(model: str, weights: str | None, data_spec: str, calib_spec: str, out_dir: Path,
                artifacts: Sequence[tuple[str, str]] = DEFAULT_ARTIFACTS, target_name: str = "x86",
                max_drop: float | None = None) -> dict[str, Any]:
    """Build each (backend, precision) artifact, run it on the data and compare its decoded results with float.

    `max_drop` is in mAP (detection) or mIoU (segmentation) points; an artifact above it raises ParityError
    after the report is written.
    """
    prepared = prepare_model(model, weights)
    task = task_for(prepared.spec, prepared.num_classes)
    if task.name == "classification":
        raise EdgembError(f"{prepared.spec.name} is a classifier: use `edgemb verify` or `edgemb compile`")
    pp = prepared.preprocessing
    data = load_data(data_spec, pp)
    truth = None
    if data_spec.startswith("synthdet:"):
        from edgemb.data.synthetic import load_spec

        truth = load_spec(data_spec, pp)
    calibration = load_data(calib_spec, pp)
    target = get_target(target_name)
    float_outputs = torch_outputs(prepared.model, data.x)
    one = [[o[i:i + 1] for o in float_outputs] for i in range(min(LATENCY_SAMPLES, len(data)))]
    post_ms = _median_ms(task.postprocess, one)
    rows = []
    shown = min(SHOWN_IMAGES, len(data))
    pictures: dict[str, list[Any]] = {}
    if truth is not None:
        pictures["truth"] = ([Detections(b, np.ones(len(b), np.float32), lab) for b, lab in
                              zip(truth.boxes[:shown], truth.labels[:shown], strict=True)]
                             if task.name == "detection" else list(truth.masks[:shown]))
    pictures["float (PyTorch)"] = task.postprocess([o[:shown] for o in float_outputs])
    with staged_output(out_dir) as stage, tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        float_onnx = export_simplified(prepared.model, prepared.spec.resolution, stage / "model.float.onnx")
        options = {}
        if needs_qdq_model(artifacts):  # int8 is the quantize stage's model, as in compile and deploy
            quantize_model(prepared, calibration, scratch / "quantize", isa=target.isa, arch=target.arch)
            options["qdq_model"] = scratch / "quantize" / "model.int8.onnx"
        inputs = BuildInputs(prepared, float_onnx, calibration.x, stage, scratch, options)
        for backend_name, precision in artifacts:
            backend = BACKENDS[backend_name]
            ok, why = backend.available()
            if not ok:
                rows.append({"backend": backend_name, "precision": precision, "status": "backend-missing",
                             "detail": why})
                continue
            started = time.perf_counter()
            artifact = None
            try:
                artifact = backend.build(inputs, target, precision, stage)
                if artifact.status != OK:  # e.g. needs its device, or does not fit the board
                    rows.append(artifact.record(stage))
                    continue
                runner = backend.load(artifact, target)
                outputs = runner.run_all(data.x)
            except Exception as exc:  # a backend that cannot take this graph is a result, not a crash
                built = artifact.record(stage) if artifact is not None else {}
                rows.append({**built, "backend": backend_name, "precision": precision, "status": "failed",
                             "detail": f"{type(exc).__name__}: {exc}".splitlines()[0][:300]})
                continue
            net_ms = _median_ms(runner.run_all, [data.x[i:i + 1] for i in range(min(LATENCY_SAMPLES, len(data)))])
            parity = task_parity(task, float_outputs, outputs, truth)
            if precision != "fp32":
                pictures[f"{backend_name} {precision}"] = task.postprocess([o[:shown] for o in outputs])
            rows.append({**artifact.record(stage), "backend": backend_name, "precision": precision, "status": "ok",
                         "network_ms": net_ms, "postprocess_ms": post_ms,
                         "seconds": round(time.perf_counter() - started, 1), "parity": parity})
        report = {
            "model": prepared.spec.name, "task": task.name, "weights": prepared.weights_tag,
            "data": data_spec, "calibration": calib_spec, "n": len(data), "target": target.name,
            "host": host_cpu(), "max_drop": max_drop, "artifacts": rows,
            "tools": tool_versions("torch", "onnxruntime", "openvino", "nncf", "pycocotools"),
        }
        write_json(stage / "task_parity.json", report)
        summary = [f"{r['backend']} {r['precision']}: " + (
            f"{r['parity']['metric']} {r['parity'].get('quant_' + r['parity']['metric'], '-')} "
            f"(float {r['parity'].get('float_' + r['parity']['metric'], '-')}, drop {r['parity'].get('drop', '-')} "
            f"points), network {r['network_ms']} ms, post-processing {r['postprocess_ms']} ms"
            if r["status"] == "ok" else f"{r['status']}: {r.get('detail', '')}") for r in rows]
        pixels = np.stack([_unnormalize(x, pp) for x in data.x[:shown]])
        classes = tuple(data.classes) if data.classes else None
        (stage / "task_report.html").write_text(comparison_page(
            f"{prepared.spec.name} ({task.name}) on {data_spec}", pixels, pictures, classes, summary))
    failed = [r for r in rows if max_drop is not None and r.get("parity", {}).get("drop", 0.0) > max_drop]
    if failed:
        worst = max(failed, key=lambda r: r["parity"]["drop"])
        raise ParityError(f"{worst['backend']} {worst['precision']} loses {worst['parity']['drop']} "
                          f"{worst['parity']['metric']} points (budget {max_drop})")
    return report
