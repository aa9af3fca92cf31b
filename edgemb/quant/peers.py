"""The tools users would otherwise stitch together, run on the same float graph and calibration samples.

These exist so our numbers are always shown next to the stock alternatives: onnxruntime's `quantize_static`
(MinMax, QDQ, per-channel) and NNCF's `quantize` (its default ONNX post-training pipeline).
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

import numpy as np
import onnx

from edgemb.errors import EdgembError


class _Reader:
    """onnxruntime's CalibrationDataReader over a float32 NCHW array, one sample per call."""

    def __init__(self, input_name: str, x: np.ndarray) -> None:
        self.input_name, self.x, self.i = input_name, x, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.i >= len(self.x):
            return None
        self.i += 1
        return {self.input_name: self.x[self.i - 1: self.i]}

    def rewind(self) -> None:
        self.i = 0


def ort_quantize_static(float_path: Path, x: np.ndarray, out_path: Path, per_channel: bool = True) -> Path:
    """onnxruntime's stock static quantization: QDQ, MinMax, uint8 activations, int8 weights."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    input_name = onnx.load(str(float_path)).graph.input[0].name
    quantize_static(str(float_path), str(out_path), _Reader(input_name, x), quant_format=QuantFormat.QDQ,
                    per_channel=per_channel, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax)
    return out_path


def nncf_quantize(float_path: Path, x: np.ndarray, out_path: Path) -> Path:
    """NNCF's default post-training quantization of an ONNX model (its output is meant for OpenVINO)."""
    try:
        import nncf
    except ImportError as exc:
        raise EdgembError("NNCF is not installed: run `make setup` (it pins nncf)") from exc
    model = onnx.load(str(float_path))
    input_name = model.graph.input[0].name
    dataset = nncf.Dataset(list(x), lambda sample: {input_name: sample[None]})
    logging.getLogger("nncf").setLevel(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()):
        quantized = nncf.quantize(model, dataset, subset_size=len(x))
    onnx.save(quantized, str(out_path))
    return out_path
