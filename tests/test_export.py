"""Export: ONNX and simplified ONNX that onnxruntime runs like PyTorch, written atomically."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
import torch

from edgemb.errors import EdgembError
from edgemb.stages import export as export_mod
from edgemb.stages.export import export_model
from edgemb.zoo import parse_model_name


def _checkpoint(tmp_path: Path, name: str, randomised, classes: int = 10) -> str:
    model = randomised(parse_model_name(name).build(classes))
    path = tmp_path / f"{name}.pt"
    torch.save(model.state_dict(), path)
    return str(path)


@pytest.mark.parametrize("name", ["v1_0.25@96", "v2_0.35@96", "v3s_1.0@96", "v3l_1.0@96"])
def test_export_parity_for_every_family(tmp_path, randomised, name):
    weights = _checkpoint(tmp_path, name.split("@")[0], randomised)
    result = export_model(parse_model_name(name), tmp_path / "out", weights=weights)
    report = json.loads((tmp_path / "out" / "export.json").read_text())
    assert report == result.report
    assert report["parity"]["n"] >= 8 and report["parity"]["max_abs_diff"] <= 1e-4
    assert report["parity"]["top1_agreement"] == 1.0
    assert report["num_classes"] == 10 and report["resolution"] == 96
    assert report["nodes_before"] >= report["nodes_after"] > 0
    sim = onnx.load(str(result.sim_path))
    onnx.checker.check_model(sim, full_check=True)
    ops = {node.op_type for node in sim.graph.node}
    assert "BatchNormalization" not in ops, "BatchNorm must be folded into the convolutions"
    if name.startswith("v3"):
        assert {"HardSwish", "HardSigmoid"} <= ops
    dims = [d.dim_value for d in sim.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 96, 96]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["export.json", "model.onnx", "model.sim.onnx"]


def test_parity_check_catches_a_wrong_onnx(tmp_path, randomised):
    """The parity metric must fail when the ONNX file is not the model it is compared with."""
    spec = parse_model_name("v1_0.25@64")
    model = randomised(spec.build(10), seed=1)
    export_mod.export_onnx(model, 64, tmp_path / "a.onnx")
    other = randomised(spec.build(10), seed=2)
    parity = export_mod.onnx_parity(other, tmp_path / "a.onnx", 64)
    assert not parity["passed"] and parity["max_abs_diff"] > 1e-3


def test_failure_midway_leaves_no_artifacts(tmp_path, monkeypatch):
    def broken(src, dst):
        raise EdgembError("simulated simplifier failure")

    monkeypatch.setattr(export_mod, "simplify_onnx", broken)
    with pytest.raises(EdgembError, match="simulated"):
        export_model(parse_model_name("v1_0.25@64"), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unwritable_output_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(EdgembError, match="not writable"):
        export_model(parse_model_name("v1_0.25@64"), blocker / "out")


def test_too_old_opset_is_refused(tmp_path):
    with pytest.raises(EdgembError, match="opset"):
        export_model(parse_model_name("v1_0.25@64"), tmp_path / "out", opset=9)
    assert not (tmp_path / "out").exists()
