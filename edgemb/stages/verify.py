"""Stage: prove a quantized artifact against the float PyTorch model, and show which layer loses accuracy."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgemb.data import load_data
from edgemb.errors import EdgembError
from edgemb.metrics import parity, sqnr_db
from edgemb.onnx_graph import Graph, run_batched, session
from edgemb.quant.quantizable import layers
from edgemb.stages.export import export_simplified
from edgemb.zoo.inference import predict
from edgemb.zoo.prepared import PreparedModel, prepare_model

LAYER_SAMPLES = 64


def _io_dims(model: onnx.ModelProto) -> tuple[list[int], list[int]]:
    graph = Graph(model)
    inp = next(i for i in model.graph.input if i.name == graph.input_name)
    dims = [[d.dim_value for d in v.type.tensor_type.shape.dim] for v in (inp, model.graph.output[0])]
    return dims[0], dims[1]


def check_matches(quant: onnx.ModelProto, path: Path, prepared: PreparedModel) -> None:
    """Refuse a quantized model whose input shape or class count is not the float model's."""
    in_dims, out_dims = _io_dims(quant)
    res = prepared.spec.resolution
    if in_dims != [1, 3, res, res] or out_dims[-1:] != [prepared.num_classes]:
        raise EdgembError(
            f"{path} takes input {in_dims} and predicts {out_dims[-1] if out_dims else '?'} classes, but "
            f"{prepared.spec.name} with these weights takes [1, 3, {res}, {res}] and predicts "
            f"{prepared.num_classes}: is it the quantized form of another model (or another @resolution)?"
        )
    params = {k: tuple(v.shape) for k, v in prepared.model.state_dict().items()}
    suffix = "_quantized"
    weights = {t.name[: -len(suffix)]: tuple(t.dims) for t in quant.graph.initializer if t.name.endswith(suffix)}
    wrong = [k for k, shape in weights.items() if k.endswith(".weight") and params.get(k) != shape]
    if wrong:
        raise EdgembError(
            f"{path} does not match {prepared.spec.name}: {len(wrong)} of its {len(weights)} quantized weights have "
            f"other names or shapes (first: {wrong[0]}); pass the --model it was quantized from"
        )


def _float_reference(quant_path: Path, prepared: PreparedModel, scratch: Path) -> Graph:
    """The float graph the artifact was quantized from (saved beside it), else a fresh export."""
    beside = quant_path.parent / "model.float.onnx"
    if beside.exists():
        return Graph.load(beside)
    return Graph.load(export_simplified(prepared.model, prepared.spec.resolution, scratch / "f.sim.onnx"))


def layer_table(float_graph: Graph, quant: onnx.ModelProto, x: np.ndarray) -> list[dict[str, Any]]:
    """SQNR of every layer's output in the quantized model against the float graph's same tensor, worst first."""
    quant_outputs = {out for node in quant.graph.node for out in node.output}
    entries = [(i, name, node.output[0]) for i, (name, node) in enumerate(layers(float_graph))
               if node.output[0] in quant_outputs]
    tensors = [t for _, _, t in entries]
    reference = run_batched(session(float_graph.model, tensors), x, tensors, desc="layers (float)")
    measured = run_batched(session(quant, tensors), x, tensors, desc="layers (int8)")
    rows = [{"index": i, "layer": name, "tensor": tensor, "sqnr_db": round(sqnr_db(ref, got), 2)}
            for (i, name, tensor), ref, got in zip(entries, reference, measured, strict=True)]
    return sorted(rows, key=lambda r: r["sqnr_db"])


def verify_quantized(quant_path: Path, model_name: str, data_spec: str, weights: str | None = None,
                     sha256: str | None = None, layer_samples: int = LAYER_SAMPLES) -> dict[str, Any]:
    """Float vs quantized top-1, drop, agreement, logits SQNR/cosine and the per-layer SQNR table."""
    if not quant_path.is_file():
        raise EdgembError(f"quantized model {quant_path} does not exist")
    try:
        quant = onnx.load(str(quant_path))
    except Exception as exc:  # protobuf raises DecodeError and friends
        raise EdgembError(f"{quant_path} is not a readable ONNX model ({exc})") from exc
    prepared = prepare_model(model_name, weights, sha256)
    check_matches(quant, quant_path, prepared)
    data = load_data(data_spec, prepared.preprocessing)
    started = time.perf_counter()
    float_logits = predict(prepared.model, data.x)
    quant_logits = run_batched(session(quant), data.x, desc="int8")[0]
    with tempfile.TemporaryDirectory() as scratch:
        reference = _float_reference(quant_path, prepared, Path(scratch))
        table = layer_table(reference, quant, data.x[:layer_samples])
    return {"model": prepared.spec.name, "artifact": str(quant_path), "data": data_spec,
            **parity(float_logits, quant_logits, data.y),
            "layer_samples": min(layer_samples, len(data)), "layers": table,
            "seconds": round(time.perf_counter() - started, 2)}
