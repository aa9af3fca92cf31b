"""Output-aware weight rounding (GPTQ + exact weight-error bias correction) on a trained reference model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgemb.data import load_data
from edgemb.onnx_graph import Graph
from edgemb.quant.quantizable import layers
from edgemb.quant.rounding import _attrs, _rows, collect_input_stats, round_layer
from edgemb.zoo.prepared import prepare_model

MODEL = "v1_0.25"


@pytest.fixture(scope="module")
def graph_and_data(tmp_path_factory):
    from edgemb.stages.export import export_simplified

    prepared = prepare_model(MODEL, "ref")
    path = export_simplified(prepared.model, prepared.spec.resolution, tmp_path_factory.mktemp("r") / "m.onnx")
    x = load_data("fashion-mnist:train:24", prepared.preprocessing).x
    return Graph.load(path), x


def _rtn_error(w: np.ndarray, cov: np.ndarray, group: np.ndarray) -> float:
    scale = np.abs(w).max(axis=1) / 127.0
    dw = w - np.clip(np.round(w / scale[:, None]), -127, 127) * scale[:, None]
    c = cov[group] if cov.shape[0] > 1 else np.broadcast_to(cov[0], (len(w), *cov.shape[1:]))
    return float(np.einsum("od,ode,oe->o", dw, c, dw).sum())


def test_gptq_rounding_beats_round_to_nearest_on_every_kind_of_layer(graph_and_data):
    graph, x = graph_and_data
    todo = layers(graph)
    stats = collect_input_stats(graph, todo, x)
    kinds = set()
    for name, node in todo:
        w = graph.array(node.input[1])
        rounded = round_layer(w, node, stats[name], per_channel=True)
        rows = _rows(w, node)
        _, cov = stats[name].moments()
        group = np.repeat(np.arange(cov.shape[0]), len(rows) // cov.shape[0])
        scale = rounded.scales[:, None]
        dw = rows - _rows(rounded.q.astype(np.float64), node) * scale
        c = cov[group] if cov.shape[0] > 1 else np.broadcast_to(cov[0], (len(rows), *cov.shape[1:]))
        ours = float(np.einsum("od,ode,oe->o", dw, c, dw).sum())
        assert ours < _rtn_error(rows, cov, group), f"{name}: output error not below round-to-nearest"
        kinds.add("depthwise" if cov.shape[0] > 1 else node.op_type)
    assert kinds == {"depthwise", "Conv", "Gemm"}


def test_bias_delta_removes_the_mean_output_shift_exactly(graph_and_data):
    graph, x = graph_and_data
    name, node = next((n, d) for n, d in layers(graph) if _attrs(d).get("group", 1) == 1 and
                      graph.array(d.input[1]).shape[2] == 1 and n != layers(graph)[0][0])
    stats = collect_input_stats(graph, [(name, node)], x)
    w = graph.array(node.input[1])
    rounded = round_layer(w, node, stats[name], per_channel=True)
    from edgemb.onnx_graph import run_batched, session

    inputs = torch.from_numpy(run_batched(session(graph.model, [node.input[0]]), x, [node.input[0]])[0])
    wq = torch.from_numpy(rounded.q.astype(np.float32) * rounded.scales.reshape(-1, 1, 1, 1))
    shift = (F.conv2d(inputs, wq) - F.conv2d(inputs, torch.from_numpy(w))).mean(dim=(0, 2, 3)).numpy()
    assert np.abs(shift).max() > 1e-5  # quantization does shift the mean ...
    np.testing.assert_allclose(shift + rounded.bias_delta, 0.0, atol=1e-4 * max(np.abs(shift).max(), 1.0))
