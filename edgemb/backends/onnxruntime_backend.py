"""onnxruntime: the simplified float ONNX and edgemb's own QDQ int8 model (per-channel, default method)."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np

from edgemb.backends.base import Artifact, BuildInputs, importable
from edgemb.errors import EdgembError
from edgemb.onnx_graph import Graph, session
from edgemb.quant.isa import choose_scheme
from edgemb.quant.qdq import QuantConfig, activation_tensors, build_qdq
from edgemb.quant.ranges import DEFAULT_METHOD, choose_range, collect_stats
from edgemb.targets import Target


class OnnxRuntimeRunner:
    """An onnxruntime CPU session over a batch-1 model."""

    def __init__(self, path: Path, threads: int = 0) -> None:
        self.session = session(path, threads=threads)
        self.input_name = self.session.get_inputs()[0].name

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Logits, one sample at a time."""
        return np.concatenate([self.session.run(None, {self.input_name: s[None]})[0] for s in batch])

    def run_all(self, batch: np.ndarray) -> list[np.ndarray]:
        """Every output (detectors and segmenters have several), one sample at a time, stacked per output."""
        runs = [self.session.run(None, {self.input_name: s[None]}) for s in batch]
        return [np.concatenate(column) for column in zip(*runs, strict=True)]


class OnnxRuntimeBackend:
    """onnxruntime behind the common interface."""

    name = "onnxruntime"

    def available(self) -> tuple[bool, str]:
        """onnxruntime is a core dependency, but say so plainly if it is missing."""
        return importable(("onnxruntime",), "onnxruntime")

    def build(self, inputs: BuildInputs, target: Target, precision: str, out_dir: Path) -> Artifact:
        """fp32: the simplified graph as is; int8: QDQ from our quantizer (per-channel weights, mse ranges)."""
        path = out_dir / f"model.{precision}.onnx"
        if precision == "fp32":
            shutil.copyfile(inputs.float_onnx, path)
        elif precision == "int8" and inputs.options.get("qdq_model"):
            shutil.copyfile(inputs.options["qdq_model"], path)  # the quantize stage's model (budget applied)
        elif precision == "int8":
            graph = Graph.load(inputs.float_onnx)
            names = activation_tensors(graph)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                stats = collect_stats(graph.model, inputs.calibration, names, histograms=True)
            ranges = {n: choose_range(stats[n], DEFAULT_METHOD) for n in names}
            scheme = choose_scheme(target.isa, target.arch)  # 7-bit weights where u8 x s8 kernels saturate
            Graph(build_qdq(graph, ranges, QuantConfig(weight_max=scheme.weight_max))).save(path)
        else:
            raise EdgembError(f"onnxruntime backend cannot build precision {precision!r}")
        return Artifact(self.name, precision, path)

    def load(self, artifact: Artifact, target: Target) -> OnnxRuntimeRunner:
        """A session with the target's thread count when the target is this host."""
        return OnnxRuntimeRunner(artifact.path, target.threads if target.name == "x86" else 0)
