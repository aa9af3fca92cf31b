"""The quantize stage's QDQ model for tests that call compile_model directly.

onnxruntime and TVM build int8 from the quantize stage's model only (edgemb.backends.base.QDQ_BACKENDS), as
`edgemb compile` and `edgemb deploy` pass it; a test that calls compile_model on its own makes it the same way.
"""

from __future__ import annotations

from pathlib import Path

from edgemb.data import as_data
from edgemb.stages.compile import default_data
from edgemb.stages.quantize import quantize_model
from edgemb.targets import get_target
from edgemb.zoo.prepared import prepare_model


def qdq_model(model: str, target: str, folder: Path, calib: str | None = None, weights: str = "ref") -> Path:
    """quantize_model for `target`'s integer kernels on the compile's calibration data; the model.int8.onnx path."""
    prepared = prepare_model(model, weights)
    calib_spec, _ = default_data(prepared, calib, None)
    board = get_target(target)
    quantize_model(prepared, as_data(calib_spec, prepared.preprocessing), folder, isa=board.isa, arch=board.arch)
    return folder / "model.int8.onnx"


def qdq_as_float_session(model):
    """onnxruntime running a QDQ model as float (no graph fusion into integer kernels): the reference on hosts
    without VNNI, whose u8 x s8 kernels saturate the int16 pair sums of 8-bit weights."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    payload = model.SerializeToString() if hasattr(model, "SerializeToString") else str(model)
    return ort.InferenceSession(payload, options, providers=["CPUExecutionProvider"])
