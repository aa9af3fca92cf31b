"""The small interface every backend implements, so the pipeline never imports a backend library itself."""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgemb.artifacts import sha256_file
from edgemb.errors import EdgembError
from edgemb.targets import Target
from edgemb.zoo.prepared import PreparedModel

# Artifact status values: "ok" ran here; the others say why it could not.
OK = "ok"
NEEDS_DEVICE = "needs-device"
DEVICE_NOT_AVAILABLE = "device-not-available"
DOES_NOT_FIT = "does-not-fit"
BACKEND_MISSING = "backend-missing"
FAILED = "failed"
# Backends whose int8 artifact is built from the quantize stage's QDQ model, passed as options["qdq_model"]: a
# stage that plans one of these at int8 runs edgemb.stages.quantize.quantize_model first (deploy, compile, the
# task check), so "onnxruntime int8" or "tvm int8" names one model whoever builds it.
QDQ_BACKENDS = ("onnxruntime", "tvm")
# Backends whose int8 artifact carries the QDQ model's quantization when one is passed (OpenVINO reads it; TFLite,
# TFLite Micro and Vela convert it, edgemb/backends/tflite_qdq.py) and fall back to their own tool's calibration,
# recorded in the artifact's "quantizer", only when none is.
QDQ_PREFERRING_BACKENDS = ("openvino", "tflite", "tflm", "vela")


def needs_qdq_model(pairs: Iterable[tuple[str, str]]) -> bool:
    """Whether building these (backend, precision) pairs needs, or would use, the quantize stage's QDQ model."""
    return any(backend in (*QDQ_BACKENDS, *QDQ_PREFERRING_BACKENDS) and precision == "int8"
               for backend, precision in pairs)


def quantize_stage_model(options: dict[str, Any], backend: str) -> Path:
    """The quantize stage's QDQ model (options["qdq_model"]) that `backend`'s int8 artifact is built from, so it
    never falls back to a recipe of its own; a missing one is an EdgembError that says how to make it."""
    given = options.get("qdq_model")
    fix = ("run `edgemb quantize MODEL --out DIR` (or quantize_model) and pass DIR/model.int8.onnx as qdq_model; "
           "`edgemb compile` and `edgemb deploy` do this themselves")
    if not given:
        raise EdgembError(f"{backend} int8 is built from the quantize stage's QDQ model and none was passed: {fix}")
    if not Path(given).is_file():
        raise EdgembError(f"{backend} int8 is built from the quantize stage's QDQ model, and qdq_model {given} is "
                          f"not a file: {fix}")
    return Path(given)


@dataclass
class BuildInputs:
    """What a backend builds from: the float model, its exported graph and the calibration samples."""

    prepared: PreparedModel
    float_onnx: Path
    calibration: np.ndarray
    work_dir: Path
    scratch: Path  # intermediate files shared between backends (not part of the artifacts)
    options: dict[str, Any] = field(default_factory=dict)  # backend settings, e.g. tune_trials for TVM


@dataclass
class Artifact:
    """A deployable file (or folder) for one backend/precision, and whether it could run here."""

    backend: str
    precision: str
    path: Path | None
    status: str = OK
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def record(self, root: Path | None = None) -> dict[str, Any]:
        """The compile.json entry: backend, precision, path, sha256, size, status and details."""
        entry: dict[str, Any] = {"backend": self.backend, "precision": self.precision, "status": self.status}
        if self.path is not None and self.path.exists():
            entry["path"] = str(self.path.relative_to(root) if root else self.path)
            entry["sha256"] = sha256_file(self.path)
            entry["size_bytes"] = sum(p.stat().st_size for p in _files_of(self.path))
        if self.detail:
            entry["detail"] = self.detail
        entry.update(self.extra)
        return entry


def _files_of(path: Path) -> list[Path]:
    """An IR's .xml has a .bin beside it; count both in its size."""
    files = [path]
    if path.suffix == ".xml" and path.with_suffix(".bin").exists():
        files.append(path.with_suffix(".bin"))
    return files


def importable(modules: tuple[str, ...], what: str) -> tuple[bool, str]:
    """Whether a backend's Python packages import here, and if not, a message saying how to get them."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            return False, f"{what} is not installed ({exc}): run `make setup`"
    return True, ""


class Runner(Protocol):
    """Something that turns a preprocessed NCHW batch into logits."""

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Logits for every sample of the batch."""
        ...


class Backend(Protocol):
    """One inference engine: can it run here, build an artifact for a target, load it for running."""

    name: str

    def available(self) -> tuple[bool, str]:
        """Whether the backend library imports here, and if not, what to install."""
        ...

    def build(self, inputs: BuildInputs, target: Target, precision: str, out_dir: Path) -> Artifact:
        """Produce the artifact for a target and precision in out_dir."""
        ...

    def load(self, artifact: Artifact, target: Target) -> Runner:
        """A runner for the artifact on this host."""
        ...


def mark_fit(artifact: Artifact, problems: list[str], board: str) -> Artifact:
    """Record whether an artifact fits its board: `fits`, and DOES_NOT_FIT with every shortfall when not."""
    if problems:
        artifact.status = DOES_NOT_FIT
        artifact.detail = f"does not fit {board}: " + "; ".join(problems)
    artifact.extra["fits"] = not problems
    return artifact
