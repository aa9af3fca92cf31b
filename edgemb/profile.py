"""Stage: run an artifact on a device (this host, the emulated board, SSH or TVM RPC) and time it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from edgemb.artifacts import check_output_file, write_json
from edgemb.data import load_data
from edgemb.device.devices import open_device
from edgemb.errors import EdgembError
from edgemb.zoo.weights import prepare_model

PROFILE_SAMPLES = 16


def model_of(artifact: Path) -> tuple[str, str | None]:
    """The model and weights an artifact was built from, read from the compile.json or report.json beside it."""
    for name in ("compile.json", "report.json"):
        record = artifact.parent / name
        if record.exists():
            data = json.loads(record.read_text())
            return data["model"], data.get("weights_spec", data.get("weights"))
    raise EdgembError(f"no compile.json or report.json next to {artifact}: pass --model (and --weights)")


def profile_inputs(model: str, weights: str | None, data: str | None) -> np.ndarray:
    """Real preprocessed samples (the weights' own preprocessing; by default their own evaluation data)."""
    prepared = prepare_model(model, weights)
    if data is None:
        named = prepared.weights.named if prepared.weights is not None else None
        data = (named.evaluation if named else None) or "photos:eval"
        return load_data(data, prepared.preprocessing).x[:PROFILE_SAMPLES]
    return load_data(data, prepared.preprocessing).x


def profile_artifact(artifact: Path, device: str | None, model: str | None = None, weights: str | None = None,
                     data: str | None = None, runs: int = 50, warmup: int = 5, threads: int = 0,
                     out: Path | None = None) -> dict[str, Any]:
    """Latency of one artifact on one device (p50/p90/p99 over `runs`), written to `out` as JSON."""
    if runs < 1 or warmup < 0 or threads < 0:
        raise EdgembError("--runs must be >= 1, --warmup and --threads >= 0")
    if not artifact.exists():
        raise EdgembError(f"artifact not found: {artifact}")
    if out is not None:
        check_output_file(out)
    target_device = open_device(device or "local")  # a bad URI fails before any model is loaded
    if model is None:
        model, weights = model_of(artifact)
    inputs = profile_inputs(model, weights, data)
    measurement = target_device.measure(artifact, inputs, runs, warmup, threads)
    report = {"stage": "profile", "artifact": str(artifact), "model": model, "data": data,
              "latency": measurement.latency(), "runtime": measurement.result.get("runtime"),
              "arch": measurement.result.get("arch")}
    if out is not None:
        write_json(out, report)
    return report
