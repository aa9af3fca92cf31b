"""Which nodes of a float graph are quantizable layers, and the names every quantization step knows them by.

The weight rounding (rounding.py), the QDQ builder (qdq.py), the corrections, the refit and verify all walk the
same layers under the same names; this is the one place that says which they are, below all of them.
"""

from __future__ import annotations

import onnx

from edgemb.onnx_graph import Graph

LAYER_OPS = ("Conv", "Gemm")


def layer_name(graph: Graph, node: onnx.NodeProto) -> str:
    """A readable layer name: the PyTorch module path of its weight (e.g. features.3.conv.1.0)."""
    weight = node.input[1]
    return weight[: -len(".weight")] if weight.endswith(".weight") else (node.name or node.output[0])


def layers(graph: Graph) -> list[tuple[str, onnx.NodeProto]]:
    """Every quantizable layer (Conv/Gemm with an initializer weight) in topological order."""
    return [(layer_name(graph, n), n) for n in graph.nodes(*LAYER_OPS) if n.input[1] in graph.initializers]
