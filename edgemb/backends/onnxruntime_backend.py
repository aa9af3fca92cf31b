"""onnxruntime: the simplified float ONNX, and for int8 the QDQ model of edgemb's quantize stage."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from edgemb.backends.base import Artifact, BuildInputs, importable, quantize_stage_model
from edgemb.errors import EdgembError
from edgemb.onnx_graph import session
from edgemb.targets import Target

# "onnxruntime int8" has one meaning: the model edgemb's quantize stage wrote (edgemb.stages.quantize), which
# compile and deploy pass in as options["qdq_model"]; the backend holds no second int8 recipe.


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
        """fp32: the simplified graph as is; int8: the quantize stage's QDQ model, never a recipe of its own."""
        path = out_dir / f"model.{precision}.onnx"
        if precision == "fp32":
            shutil.copyfile(inputs.float_onnx, path)
        elif precision == "int8":
            shutil.copyfile(quantize_stage_model(inputs.options, self.name), path)  # budget applied there
        else:
            raise EdgembError(f"onnxruntime backend cannot build precision {precision!r}")
        return Artifact(self.name, precision, path)

    def load(self, artifact: Artifact, target: Target) -> OnnxRuntimeRunner:
        """A session with the target's thread count when the target is this host."""
        return OnnxRuntimeRunner(artifact.path, target.threads if target.name == "x86" else 0)
