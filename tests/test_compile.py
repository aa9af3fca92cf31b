"""compile: real OpenVINO and onnxruntime artifacts, each verified; clear statuses for absent devices."""

from __future__ import annotations

import json

import pytest

from edgemb import cli
from edgemb.backends import BACKENDS
from edgemb.data import load_data
from edgemb.errors import EdgembError
from edgemb.quant.options import DEFAULT_METHOD
from edgemb.stages.compile import compile_model
from edgemb.zoo.prepared import prepare_model
from tests.stages import qdq_model

SMALL = {"calib": "fashion-mnist:train:128", "eval_spec": "fashion-mnist:test:500"}


@pytest.fixture(scope="module")
def x86_build(tmp_path_factory):
    root = tmp_path_factory.mktemp("c")
    qdq = qdq_model("v1_0.25", "x86", root / "quantize", SMALL["calib"])
    return root / "x86", compile_model("v1_0.25", "x86", root / "x86", qdq_model=qdq, **SMALL), qdq


def test_x86_builds_and_verifies_every_artifact(x86_build):
    out, report, _ = x86_build
    assert json.loads((out / "compile.json").read_text()) == report
    built = {(a["backend"], a["precision"]): a for a in report["artifacts"]}
    assert set(built) == {(b, p) for b in ("onnxruntime", "openvino", "tflite", "tvm") for p in ("fp32", "int8")}
    for artifact in built.values():
        assert artifact["status"] == "ok" and (out / artifact["path"]).exists()
        assert len(artifact["sha256"]) == 64 and artifact["size_bytes"] > 0
        assert artifact["parity"]["n"] == 500 and artifact["parity"]["drop"] <= 1.0
    assert built[("openvino", "fp32")]["parity"]["agreement"] == 1.0
    assert built[("openvino", "int8")]["size_bytes"] < built[("openvino", "fp32")]["size_bytes"]
    int8_kernels = built[("openvino", "int8")]["kernel_precisions"]
    assert int8_kernels.get("u8", 0) + int8_kernels.get("i8", 0) > int8_kernels.get("f32", 0), \
        "OpenVINO must run the int8 IR's convolutions in integer precision"


def test_onnxruntime_int8_is_the_quantize_stage_model_byte_for_byte(x86_build):
    out, report, qdq = x86_build
    (ort,) = [a for a in report["artifacts"] if (a["backend"], a["precision"]) == ("onnxruntime", "int8")]
    assert (out / ort["path"]).read_bytes() == qdq.read_bytes()


def test_openvino_int8_carries_edgembs_quantization_not_a_second_one(x86_build):
    """The OpenVINO int8 IR is converted from the quantize stage's QDQ model: its logits match onnxruntime's
    integer run of that model far more closely than either matches float (NNCF's own int8 would not)."""
    out, report, qdq = x86_build
    built = {(a["backend"], a["precision"]): a for a in report["artifacts"]}
    ov_int8, ort_int8 = built[("openvino", "int8")], built[("onnxruntime", "int8")]
    assert ov_int8["quantizer"].startswith("edgemb")
    prepared = prepare_model("v1_0.25", "ref")
    x = load_data(SMALL["eval_spec"], prepared.preprocessing).x[:200]
    from edgemb.backends.openvino_backend import OpenVinoRunner
    from edgemb.metrics import sqnr_db
    from edgemb.onnx_graph import run_batched, session

    ov_logits = OpenVinoRunner(out / ov_int8["path"]).run(x)
    ort_logits = run_batched(session(qdq), x)[0]
    assert sqnr_db(ort_logits, ov_logits) > ort_int8["parity"]["sqnr_db"] + 6, \
        "OpenVINO int8 does not compute the QDQ model's quantization"


def test_onnxruntime_int8_without_the_quantize_stage_model_is_a_clear_failure_not_a_second_recipe(tmp_path):
    report = compile_model("v1_0.25", "x86", tmp_path / "o", backend="onnxruntime", calib=SMALL["calib"])
    built = {a["precision"]: a for a in report["artifacts"]}
    assert built["fp32"]["status"] == "ok"
    assert built["int8"]["status"] == "failed" and "path" not in built["int8"]
    assert "quantize stage's QDQ model" in built["int8"]["detail"] and "edgemb quantize" in built["int8"]["detail"]


def test_tvm_int8_lowers_only_the_quantize_stage_model_never_a_file_it_finds(tmp_path):
    """A model.int8.onnx beside the output (what the TVM backend once fell back to) is not the quantize stage's
    model: without qdq_model the build fails naming the fix, and a qdq_model that is not there fails too."""
    from types import SimpleNamespace

    from edgemb.backends.tvm_backend import TvmBackend
    from edgemb.targets import get_target

    (tmp_path / "model.int8.onnx").write_bytes(b"an onnxruntime int8 artifact of some earlier build")
    inputs = SimpleNamespace(options={}, float_onnx=tmp_path / "model.onnx")
    with pytest.raises(EdgembError, match=r"tvm int8 .*quantize stage's QDQ model.*none was passed.*edgemb quantize"):
        TvmBackend().build(inputs, get_target("x86"), "int8", tmp_path)
    inputs.options["qdq_model"] = tmp_path / "quantize" / "model.int8.onnx"
    with pytest.raises(EdgembError, match=r"quantize stage's QDQ model.*is not a file.*edgemb quantize"):
        TvmBackend().build(inputs, get_target("x86"), "int8", tmp_path)


def test_standalone_compile_quantizes_through_the_quantize_stage(tmp_path, capsys):
    out = tmp_path / "c"
    assert cli.main(["compile", "v1_0.25", "--weights", "ref", "--target", "x86", "--backend", "onnxruntime",
                     "--calib", "fashion-mnist:train:64", "--eval", "fashion-mnist:test:100", "--out", str(out)]) == 0
    quantized = json.loads((out / "quantize" / "quantize.json").read_text())
    assert quantized["stage"] == "quantize" and quantized["calibration"]["n"] == 64
    assert quantized["settings"]["method"] == DEFAULT_METHOD and quantized["isa"]["weight_max"] in (63, 127)
    report = json.loads((out / "compile.json").read_text())
    (ort,) = [a for a in report["artifacts"] if a["precision"] == "int8"]
    assert ort["status"] == "ok"
    assert (out / ort["path"]).read_bytes() == (out / "quantize" / "model.int8.onnx").read_bytes()


def test_onnxruntime_int8_is_judged_on_the_quantize_stages_own_outputs_not_run_twice(tmp_path, monkeypatch):
    """The onnxruntime int8 artifact is the quantize stage's model byte for byte, which that stage already ran on
    the evaluation samples: compile takes those outputs, and only those (same bytes, same samples)."""
    import numpy as np

    from edgemb.onnx_graph import run_batched, session
    from edgemb.stages.quantize import eval_outputs_path, saved_eval_outputs

    backend, loaded = BACKENDS["onnxruntime"], []
    original_load = backend.load
    monkeypatch.setattr(backend, "load", lambda artifact, target: loaded.append(artifact.precision)
                        or original_load(artifact, target))
    out = tmp_path / "c"
    assert cli.main(["compile", "v1_0.25", "--weights", "ref", "--target", "x86", "--backend", "onnxruntime",
                     "--calib", "fashion-mnist:train:64", "--eval", "fashion-mnist:test:100", "--out", str(out)]) == 0
    qdq = out / "quantize" / "model.int8.onnx"
    quantized = json.loads((out / "quantize" / "quantize.json").read_text())
    built = {a["precision"]: a for a in json.loads((out / "compile.json").read_text())["artifacts"]}
    assert "quantize stage" in built["int8"]["verified_with"] and "verified_with" not in built["fp32"]
    assert loaded == ["fp32"], "compile ran the int8 model again"
    for key in ("n", "agreement", "sqnr_db", "drop"):
        assert built["int8"]["parity"][key] == quantized["eval"][key], key
    x = load_data("fashion-mnist:test:100", prepare_model("v1_0.25", "ref").preprocessing).x
    saved = saved_eval_outputs(qdq, out / built["int8"]["path"], x)
    np.testing.assert_array_equal(saved[0], run_batched(session(qdq), x)[0])
    assert saved_eval_outputs(qdq, out / built["int8"]["path"], x[1:]) is None, "other samples"
    assert saved_eval_outputs(qdq, out / built["fp32"]["path"], x) is None, "other bytes"
    eval_outputs_path(qdq).unlink()
    assert saved_eval_outputs(qdq, out / built["int8"]["path"], x) is None


def test_ncs2_gets_an_fp16_ir_and_a_needs_device_status(tmp_path):
    report = compile_model("v1_0.25", "intel-ncs2", tmp_path / "o", **SMALL)
    (artifact,) = report["artifacts"]
    assert (artifact["precision"], artifact["status"]) == ("fp16", "needs-device")
    assert "2022.3" in artifact["detail"] and (tmp_path / "o" / artifact["path"]).exists()


def test_npu_reports_device_not_available_instead_of_crashing(tmp_path):
    report = compile_model("v1_0.25", "intel-npu", tmp_path / "o", **SMALL)
    assert {a["status"] for a in report["artifacts"]} == {"device-not-available"}
    assert all("NPU device not available" in a["detail"] for a in report["artifacts"])


def test_missing_backend_library_does_not_stop_the_others(tmp_path, monkeypatch):
    monkeypatch.setattr(BACKENDS["openvino"], "available", lambda: (False, "openvino is not installed"))
    report = compile_model("v1_0.25", "x86", tmp_path / "o", **SMALL)
    statuses = {(a["backend"], a["status"]) for a in report["artifacts"]}
    assert ("openvino", "backend-missing") in statuses and ("onnxruntime", "ok") in statuses


def test_unsupported_requests_are_clear_errors_and_leave_nothing(tmp_path, capsys):
    assert cli.main(["compile", "v1_0.25", "--target", "intel-ncs2", "--backend", "tflm", "--out",
                     str(tmp_path / "a")]) == 2
    assert "does not support backend 'tflm'" in capsys.readouterr().err
    assert cli.main(["compile", "v1_0.25", "--target", "mars-rover", "--out", str(tmp_path / "b")]) == 2
    assert "known targets" in capsys.readouterr().err
    with pytest.raises(EdgembError, match="--calib SPEC is needed"):
        compile_model("v1_0.25", "x86", tmp_path / "c", weights="random")
    assert not any((tmp_path / n).exists() for n in "abc")


def test_x86_tflite_float_and_int8(tmp_path):
    report = compile_model("v1_0.25", "x86", tmp_path / "o", backend="tflite", **SMALL)
    built = {a["precision"]: a for a in report["artifacts"]}
    assert built["fp32"]["parity"]["agreement"] == 1.0 and built["fp32"]["parity"]["sqnr_db"] > 60
    assert built["int8"]["status"] == "ok" and built["int8"]["parity"]["drop"] <= 1.0
    assert built["int8"]["size_bytes"] < built["fp32"]["size_bytes"] / 2
    # The logits' int8 range covers the float model's largest calibration logit: a moving-average range
    # clips the confident samples' top logits into ties (ImageNet V2@224: 38% confident agreement).
    from ai_edge_litert.interpreter import Interpreter

    prepared = prepare_model("v1_0.25", "ref")
    calib = load_data(SMALL["calib"], prepared.preprocessing).x
    output = Interpreter(model_path=str(tmp_path / "o" / built["int8"]["path"])).get_output_details()[0]
    scale, zero = output["quantization"]
    assert (127 - zero) * scale >= prepared.float_logits(calib).max() - scale


@pytest.fixture(scope="module")
def tflm_build(tmp_path_factory):
    """compile_model of v1_0.25 for a microcontroller board, built once per board for this module's tests."""
    built: dict[str, tuple] = {}

    def build(board: str):
        if board not in built:
            out = tmp_path_factory.mktemp(board) / "o"
            built[board] = out, compile_model("v1_0.25", board, out, **SMALL)
        return built[board]

    return build


@pytest.mark.parametrize("board", ["cortex-m7", "cortex-m4"])
def test_v1_025_tflm_artifact_fits_and_matches_litert_reference_kernels(tflm_build, board):
    out, report = tflm_build(board)
    (artifact,) = report["artifacts"]
    assert artifact["status"] == "ok" and artifact["fits"]
    memory = artifact["memory"]
    assert 0 < memory["arena_bytes"] <= memory["target_sram_bytes"]
    assert memory["flash_bytes"] == artifact["size_bytes"] <= memory["target_flash_bytes"]
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"} <= set(artifact["ops"])
    assert artifact["reference_agreement"]["agreement"] >= 0.99
    assert artifact["parity"]["drop"] <= 1.0
    source = (out / artifact["c_source"]).read_text()
    assert f"g_model_data_len = {artifact['size_bytes']};" in source and "alignas(16)" in source
    header = (out / "tflm" / "model_data.h").read_text()
    assert f"kTensorArenaSize = {memory['arena_bytes']}" in header and "CONV_2D" in header


def test_arena_search_finds_the_boundary(tflm_build):
    from edgemb.backends.tflm_backend import ARENA_STEP, arena_fits, minimal_arena

    out, report = tflm_build("cortex-m7")
    model = out / report["artifacts"][0]["path"]
    arena = minimal_arena(model)
    assert arena_fits(model, arena)[0] and not arena_fits(model, arena - ARENA_STEP)[0]


@pytest.mark.slow
def test_v2_does_not_fit_a_cortex_m4_and_says_by_how_much(tmp_path):
    report = compile_model("v2_1.0", "cortex-m4", tmp_path / "o", calib="fashion-mnist:train:64",
                           eval_spec="fashion-mnist:test:100")
    (artifact,) = report["artifacts"]
    assert artifact["status"] == "does-not-fit" and not artifact["fits"]
    assert f"> flash {artifact['memory']['target_flash_bytes']:,} B" in artifact["detail"]
    assert artifact["memory"]["flash_bytes"] > artifact["memory"]["target_flash_bytes"]
    assert "parity" in artifact, "a model too big for the board still gets its parity measured on the host"
