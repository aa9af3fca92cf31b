"""OpenVINO: float IR, int8 IR from edgemb's QDQ model (NNCF on the `ov.convert_model` graph when there is
none), FP16 IR for MYRIAD/NPU.

The QDQ model converts to FakeQuantize ops that the CPU plugin runs as u8 kernels with edgemb's ranges and
rounding (measured on V2@224: 21.8 dB logits SQNR against onnxruntime's 21.4 dB on the same QDQ model, where
NNCF's own int8 lost 2-4 dB). NNCF on the converted OpenVINO model also gives real int8 kernels (NNCF on
`read_model(onnx)` leaves depthwise convs in f32). Parity runs force f32 inference because this CPU would
otherwise run bf16.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from edgemb.backends.base import (
    DEVICE_NOT_AVAILABLE,
    NEEDS_DEVICE,
    Artifact,
    BuildInputs,
    importable,
)
from edgemb.errors import EdgembError
from edgemb.targets import Target

NCS2_NOTE = ("Intel NCS2 (MYRIAD) runs FP16 IRs only, no int8; it needs OpenVINO 2022.3 LTS (the last release "
             "with the MYRIAD plugin, Python <= 3.10) and the stick plugged in")


class OpenVinoRunner:
    """A compiled OpenVINO model; f32 precision hint so parity measures the IR, not bf16 rounding."""

    def __init__(self, xml: Path, device: str = "CPU", threads: int = 0) -> None:
        import openvino as ov

        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = ov.Core().compile_model(str(xml), device, config)
        self.request = self.compiled.create_infer_request()

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Logits, one sample at a time (the IR has a static batch of 1)."""
        return np.concatenate([self.request.infer({0: sample[None]})[0].copy() for sample in batch])

    def run_all(self, batch: np.ndarray) -> list[np.ndarray]:
        """Every output in the model's output order (detectors and segmenters have several), stacked per output."""
        count = len(self.compiled.outputs)
        runs = [[result[k].copy() for k in range(count)] for result in
                (self.request.infer({0: sample[None]}) for sample in batch)]
        return [np.concatenate(column) for column in zip(*runs, strict=True)]

    def kernel_precisions(self) -> dict[str, int]:
        """How many convolutions the CPU plugin runs in each precision: proof that int8 kernels run."""
        counts: Counter = Counter()
        for op in self.compiled.get_runtime_model().get_ordered_ops():
            info = op.get_rt_info()
            if info["layerType"].astype(str) == "Convolution":
                counts[info["runtimePrecision"].astype(str)] += 1
        return dict(counts)


def without_16bit_qdq(path: Path, out: Path) -> list[str]:
    """Write the QDQ model to `out` without its 16-bit Quantize/Dequantize pairs (those tensors stay float);
    returns their names.

    OpenVINO 2026.4 converts uint16 QDQ pairs (the quantize stage's rescue for sensitive activations) into
    FakeQuantize ops that destroy the values (3% agreement with float on V2@224); 8-bit pairs convert exactly.
    """
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    consts = {t.name: t for t in graph.initializer}
    wide = {onnx.TensorProto.UINT16, onnx.TensorProto.INT16}
    producers = {out: node for node in graph.node for out in node.output}
    bypass: dict[str, str] = {}
    drop: list = []
    for node in graph.node:
        if node.op_type != "DequantizeLinear" or len(node.input) < 3 or node.input[2] not in consts:
            continue
        if consts[node.input[2]].data_type not in wide:
            continue
        quant = producers.get(node.input[0])
        if quant is None or quant.op_type != "QuantizeLinear":
            continue
        bypass[node.output[0]] = quant.input[0]
        drop += [node, quant]
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in bypass:
                node.input[i] = bypass[name]
    for output in graph.output:
        if output.name in bypass:
            raise EdgembError(f"{path}: a 16-bit QDQ pair feeds the graph output {output.name}; cannot strip it")
    for node in drop:
        graph.node.remove(node)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    return sorted(bypass.values())


class OpenVinoBackend:
    """The OpenVINO backend behind the common interface."""

    name = "openvino"

    def available(self) -> tuple[bool, str]:
        """OpenVINO imports here (NNCF is needed for int8)."""
        return importable(("openvino", "nncf"), "OpenVINO/NNCF")

    def build(self, inputs: BuildInputs, target: Target, precision: str, out_dir: Path) -> Artifact:
        """Float, int8 or FP16 IR for the target's OpenVINO device; device checks where one is named."""
        import openvino as ov

        device = target.openvino_device or "CPU"
        xml = out_dir / f"model.{precision}.xml"
        qdq = inputs.options.get("qdq_model")
        extra: dict[str, Any] = {"device": device}
        if precision == "int8" and qdq is not None and Path(qdq).exists():
            # edgemb's own quantization: the QDQ model's ranges and rounded weights become FakeQuantize ops
            # that the CPU plugin runs as u8 kernels, so this IR matches the onnxruntime int8 artifact.
            stripped = inputs.work_dir / "model.int8.openvino.onnx"
            widened = without_16bit_qdq(Path(qdq), stripped)
            model = ov.convert_model(str(stripped))
            extra["quantizer"] = "edgemb (the quantize stage's QDQ model)"
            if widened:
                extra["float_activations"] = widened
                extra["note"] = (f"{len(widened)} activation(s) the quantize stage raised to 16 bits run in float "
                                 "here: OpenVINO's ONNX reader turns 16-bit QDQ pairs into wrong values")
        elif precision == "int8":
            model = self._nncf_int8(ov.convert_model(str(inputs.float_onnx)), inputs.calibration)
            extra["quantizer"] = "nncf (no QDQ model given)"
        elif precision in ("fp32", "fp16"):
            model = ov.convert_model(str(inputs.float_onnx))
        else:
            raise EdgembError(f"OpenVINO backend cannot build precision {precision!r}")
        ov.save_model(model, str(xml), compress_to_fp16=precision == "fp16")
        artifact = Artifact(self.name, precision, xml, extra=extra)
        if device == "MYRIAD":
            artifact.status, artifact.detail = NEEDS_DEVICE, NCS2_NOTE
        elif device != "CPU":
            ok, why = self.device_available(device, xml)
            if not ok:
                artifact.status, artifact.detail = DEVICE_NOT_AVAILABLE, why
        return artifact

    @staticmethod
    def _nncf_int8(model, calibration: np.ndarray):
        import nncf

        dataset = nncf.Dataset(list(calibration), lambda sample: sample[None])
        logging.getLogger("nncf").setLevel(logging.ERROR)
        with contextlib.redirect_stdout(io.StringIO()):
            return nncf.quantize(model, dataset, subset_size=len(calibration))

    @staticmethod
    def device_available(device: str, xml: Path) -> tuple[bool, str]:
        """Try compiling for a device; a missing plugin, driver or device becomes a one-line reason."""
        import openvino as ov

        core = ov.Core()
        if device not in core.available_devices:
            try:
                core.compile_model(str(xml), device)
            except RuntimeError as exc:
                last = [line for line in str(exc).splitlines() if line.strip()][-1].strip()
                return False, f"{device} device not available on this machine ({last[:200]})"
        return True, ""

    def load(self, artifact: Artifact, target: Target) -> OpenVinoRunner:
        """Compile the IR for the host CPU (parity and latency runs here)."""
        return OpenVinoRunner(artifact.path, "CPU", target.threads if target.name == "x86" else 0)
