"""Small helpers over an ONNX graph: initializers as numpy, producers/consumers, running with taps.

The quantizer, CLE and bias correction all edit the same BN-folded graph that export produced, so the
float function they start from is the one proven equal to PyTorch.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from edgemb.progress import progress


class Graph:
    """A mutable view of an ONNX model with name-indexed initializers and edges."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        self.graph = model.graph
        self.refresh()

    @classmethod
    def load(cls, path: Path) -> Graph:
        """Read a model file."""
        return cls(onnx.load(str(path)))

    def copy(self) -> Graph:
        """An independent deep copy (edits to it leave this graph alone)."""
        clone = onnx.ModelProto()
        clone.CopyFrom(self.model)
        return Graph(clone)

    def refresh(self) -> None:
        """Rebuild the indexes after nodes or initializers changed."""
        self.initializers = {t.name: t for t in self.graph.initializer}
        self.producer = {out: node for node in self.graph.node for out in node.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for node in self.graph.node:
            for name in node.input:
                self.consumers[name].append(node)

    def array(self, name: str) -> np.ndarray:
        """An initializer as a numpy array (a copy)."""
        return numpy_helper.to_array(self.initializers[name]).copy()

    def set_array(self, name: str, value: np.ndarray) -> None:
        """Create or replace an initializer."""
        value = np.asarray(value)
        tensor = numpy_helper.from_array(value if value.flags.c_contiguous else value.copy(), name)
        if name in self.initializers:
            self.initializers[name].CopyFrom(tensor)
        else:
            self.graph.initializer.append(tensor)
            self.initializers[name] = self.graph.initializer[-1]

    def const_scalar(self, name: str) -> float | None:
        """Value of a scalar initializer or Constant node output, None if it is neither."""
        if name in self.initializers:
            return float(self.array(name).reshape(-1)[0])
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant":
            return float(numpy_helper.to_array(node.attribute[0].t).reshape(-1)[0])
        return None

    @property
    def input_name(self) -> str:
        """The single real graph input."""
        return next(i.name for i in self.graph.input if i.name not in self.initializers)

    @property
    def output_name(self) -> str:
        """The single graph output (logits)."""
        return self.graph.output[0].name

    @property
    def output_names(self) -> set[str]:
        """Every graph output (a detector has several)."""
        return {o.name for o in self.graph.output}

    def nodes(self, *op_types: str) -> list[onnx.NodeProto]:
        """Nodes of the given op types in graph (topological) order."""
        return [n for n in self.graph.node if n.op_type in op_types]

    def save(self, path: Path) -> None:
        """Write the model, checking it first."""
        onnx.checker.check_model(self.model)
        onnx.save(self.model, str(path))


def truncated(model: onnx.ModelProto, outputs: Sequence[str]) -> onnx.ModelProto:
    """The part of the model that computes `outputs`, which become its only outputs.

    onnxruntime runs every node of a session whatever outputs are asked for, so a pass that needs an early
    tensor of a large model (the refit's first layers at 224) pays for the whole network without this.
    """
    producer = {out: node for node in model.graph.node for out in node.output}
    needed, stack, keep = set(), list(outputs), set()
    while stack:
        name = stack.pop()
        if name in needed:
            continue
        needed.add(name)
        node = producer.get(name)
        if node is not None and id(node) not in keep:
            keep.add(id(node))
            stack.extend(n for n in node.input if n)
    proto = onnx.ModelProto()
    proto.CopyFrom(model)
    graph = proto.graph
    nodes = [node for node in model.graph.node if id(node) in keep]
    graph.ClearField("node")
    graph.node.extend(nodes)
    initializers = [t for t in model.graph.initializer if t.name in needed]
    graph.ClearField("initializer")
    graph.initializer.extend(initializers)
    graph.ClearField("output")
    graph.output.extend(onnx.ValueInfoProto(name=name) for name in outputs)
    return proto


def session(model: onnx.ModelProto | Path, outputs: Sequence[str] = (), threads: int = 0):
    """An onnxruntime CPU session; `outputs` adds intermediate tensors as extra graph outputs."""
    import onnxruntime as ort

    if outputs:
        proto = onnx.ModelProto()
        proto.CopyFrom(model if isinstance(model, onnx.ModelProto) else onnx.load(str(model)))
        existing = {o.name for o in proto.graph.output}
        for name in outputs:
            if name not in existing:
                proto.graph.output.append(onnx.ValueInfoProto(name=name))
        model = proto
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    payload = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(payload, options, providers=["CPUExecutionProvider"])


def run_batched(sess, x: np.ndarray, outputs: Sequence[str] | None = None, desc: str = "onnxruntime",
                seconds: list[float] | None = None) -> list:
    """Run a batch-1 ONNX session over N samples; returns one stacked array per requested output.

    `seconds`, when given, receives each sample's run time (the session call alone, no stacking)."""
    input_name = sess.get_inputs()[0].name
    names = list(outputs) if outputs else [o.name for o in sess.get_outputs()]
    collected: list[list[np.ndarray]] = [[] for _ in names]
    for sample in progress(x, desc=desc, unit="img"):
        started = time.perf_counter()
        values = sess.run(names, {input_name: sample[None]})
        if seconds is not None:
            seconds.append(time.perf_counter() - started)
        for store, value in zip(collected, values, strict=True):
            store.append(value)
    return [np.concatenate(values) for values in collected]
