"""Backends by name. Each module imports its engine lazily, so a missing engine only disables itself."""

from __future__ import annotations

from edgemb.backends.base import Artifact, Backend, BuildInputs, Runner
from edgemb.backends.onnxruntime_backend import OnnxRuntimeBackend
from edgemb.backends.openvino_backend import OpenVinoBackend
from edgemb.backends.tflite_backend import TfliteBackend
from edgemb.backends.tflm_backend import TflmBackend
from edgemb.backends.tvm_backend import TvmBackend
from edgemb.backends.vela_backend import VelaBackend

BACKENDS: dict[str, Backend] = {
    b.name: b for b in (OnnxRuntimeBackend(), OpenVinoBackend(), TfliteBackend(), TflmBackend(), TvmBackend(),
                        VelaBackend())
}
PRECISIONS: dict[str, tuple[str, ...]] = {"onnxruntime": ("fp32", "int8"), "openvino": ("fp32", "fp16", "int8"),
                                          "tflite": ("fp32", "int8"), "tflm": ("int8",), "tvm": ("fp32", "int8"),
                                          "vela": ("int8",)}

__all__ = ["BACKENDS", "PRECISIONS", "Artifact", "Backend", "BuildInputs", "Runner"]
