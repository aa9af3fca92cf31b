"""Ethos-U through Vela: every board configuration compiles a small int8 model, records its estimate, operator
split, memory against the board and firmware files; parity runs on the reference kernels of the source model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgemb import cli
from edgemb.backends.base import BuildInputs
from edgemb.backends.vela_backend import ESTIMATE_LABEL, PARITY_NOTE, TFLM_OVERHEAD_BYTES, VelaBackend, planned_arena
from edgemb.data import load_data
from edgemb.errors import EdgembError
from edgemb.stages.compile import compile_model
from edgemb.targets import get_target, parse_target
from edgemb.zoo.prepared import prepare_model

BOARDS = {"corstone-300": ("Ethos_U55_128", "Shared_Sram", 500e6), "alif-e7-he": ("Ethos_U55_128", "Shared_Sram",
                                                                                   160e6),
          "imx93": ("Ethos_U65_256", "Dedicated_Sram_384KB", 1e9),
          "corstone-320": ("Ethos_U85_256", "Dedicated_Sram_384KB", 1e9)}
MODEL = "v2_0.35@96"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> BuildInputs:
    """One int8 TFLite of the Fashion-MNIST reference v2_0.35 at 96x96, shared by every board's build."""
    scratch = tmp_path_factory.mktemp("vela-scratch")
    prepared = prepare_model(MODEL, "ref")
    calibration = load_data("fashion-mnist:train:32", prepared.preprocessing)
    return BuildInputs(prepared, scratch / "unused.onnx", calibration.x, scratch, scratch)


@pytest.fixture(scope="module")
def built(inputs, tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    """Each Ethos-U board's artifact record."""
    result = {}
    for board in BOARDS:
        out = tmp_path_factory.mktemp(board)
        artifact = VelaBackend().build(inputs, get_target(board), "int8", out)
        result[board] = (out, artifact.record(out))
    return result


@pytest.mark.parametrize("board", list(BOARDS))
def test_each_board_records_estimate_split_memory_and_fit(built, board):
    out, record = built[board]
    accelerator, memory_mode, clock = BOARDS[board]
    assert record["status"] == "ok" and record["fits"] is True
    estimate = record["estimate"]
    assert estimate["label"] == ESTIMATE_LABEL == "estimated (Vela performance model)"
    assert (estimate["accelerator"], estimate["memory_mode"], estimate["core_clock_hz"]) == (accelerator, memory_mode,
                                                                                             clock)
    assert estimate["cycles_total"] > 0 and estimate["nn_macs"] > 1e7
    # time = cycles / clock: the estimate is Vela's cycle count at the board's NPU clock
    assert estimate["inference_ms"] == pytest.approx(estimate["cycles_total"] / clock * 1e3, rel=1e-3)
    assert record["latency_estimate"]["p50_ms"] == estimate["inference_ms"]
    assert "Vela" in record["latency_estimate"]["kind"] and "not a measurement" in record["latency_estimate"]["basis"]
    split = record["npu_split"]
    assert split["npu"] + split["cpu"] == split["total"] >= 60 and split["ethos_u_ops"] >= 1
    assert split["cpu"] == 0 and split["cpu_fallback_ops"] == []  # MobileNetV2 runs wholly on the NPU
    memory = record["memory"]
    assert memory["flash_bytes"] == record["size_bytes"]
    arena, fast = planned_arena(out / record["path"])
    assert memory["arena_bytes"] == arena + TFLM_OVERHEAD_BYTES and memory["npu_cache_bytes"] == fast
    for key, need in memory["needs"].items():
        assert need <= memory["board"][key] == get_target(board).memory[key]
    if memory_mode == "Shared_Sram":  # arena in SRAM, model in flash
        assert (memory["feature_map_area"], memory["weights_area"]) == ("SRAM", "Off-chip Flash")
        assert memory["needs"] == {"sram_bytes": memory["arena_bytes"], "flash_bytes": record["size_bytes"]}
    else:  # model and arena in DRAM, the NPU's cache in SRAM
        assert (memory["feature_map_area"], memory["weights_area"]) == ("DRAM", "DRAM")
        assert 0 < fast <= 384 * 1024 and memory["needs"]["sram_bytes"] == fast
    folder = out / "vela"
    assert f"g_model_data_len = {record['size_bytes']};" in (folder / "model_data.cc").read_text()
    header = (folder / "model_data.h").read_text()
    assert f"kTensorArenaSize = {memory['arena_bytes']}" in header and "Register_ETHOSU" in header
    assert (folder / "summary.csv").exists() and (folder / "vela.ini").exists()
    assert record["parity_note"] == PARITY_NOTE and "not checked" in PARITY_NOTE


def test_clock_override_scales_the_estimate(built):
    """The Alif RTSS-HE is Arm's High_End_Embedded config at 160 MHz: same cycles, 500/160 x the time."""
    fast, slow = built["corstone-300"][1]["estimate"], built["alif-e7-he"][1]["estimate"]
    assert fast["cycles_total"] == slow["cycles_total"]
    assert slow["inference_ms"] == pytest.approx(fast["inference_ms"] * 500 / 160, rel=1e-3)
    ini = (built["alif-e7-he"][0] / "vela" / "vela.ini").read_text()
    assert "core_clock = 1.6e+08" in ini and "Sram_clock_scale" in ini


def test_a_board_too_small_gets_does_not_fit_with_the_shortfall(inputs, tmp_path):
    """16 KiB of SRAM cannot even hold the 27 KiB input, however Vela plans; 100 kB of flash not the model."""
    target = get_target("corstone-300")
    small = type(target)(**{**target.__dict__, "memory": {"flash_bytes": 100_000, "sram_bytes": 16 * 1024}})
    artifact = VelaBackend().build(inputs, small, "int8", tmp_path)
    record = artifact.record(tmp_path)
    assert record["status"] == "does-not-fit" and record["fits"] is False
    assert "sram needs" in record["detail"] and "flash needs" in record["detail"] and "> 16,384 B" in record["detail"]


def test_cpu_fallback_ops_are_named(inputs, tmp_path, monkeypatch):
    """An op Vela leaves on the CPU stays in the output model and is named in the record."""
    from edgemb.backends import vela_backend

    real = vela_backend.run_vela

    def ignoring_mean(model, npu, folder, extra=()):
        return real(model, npu, folder, ("--ignore-ops", "MEAN"))

    monkeypatch.setattr(vela_backend, "run_vela", ignoring_mean)
    record = VelaBackend().build(inputs, get_target("corstone-300"), "int8", tmp_path).record(tmp_path)
    split = record["npu_split"]
    assert split["cpu_fallback_ops"] == ["MEAN"] and split["cpu"] == 1 and split["npu"] == split["total"] - 1
    assert "MEAN" in (tmp_path / "vela" / "model_data.h").read_text()


def test_compile_verifies_on_reference_kernels_and_cli_lists_fit(tmp_path, capsys):
    report = compile_model(MODEL, "corstone-320", tmp_path / "o", calib="fashion-mnist:train:32",
                           eval_spec="fashion-mnist:test:100")
    (artifact,) = report["artifacts"]
    assert artifact["backend"] == "vela" and artifact["status"] == "ok"
    assert artifact["parity"]["n"] == 100 and artifact["parity"]["drop"] <= 3.0
    assert "reference kernels" in artifact["parity_note"]
    assert json.loads((tmp_path / "o" / "compile.json").read_text())["artifacts"][0]["fits"] is True


def test_board_file_npu_section_is_validated():
    base = {"name": "b", "board": "B", "kind": "mcu", "cpu": {"arch": "a", "core": "c", "cores": 1, "isa": []},
            "runtime": {"threads": 1, "backends": ["vela"], "precisions": ["int8"]},
            "memory": {"sram_bytes": 1}, "device": {"access": "none"}}
    with pytest.raises(EdgembError, match=r"needs an \[npu\] section"):
        parse_target(base, "b.toml")
    npu = {"accelerator": "ethos-u55-128", "system_config": "Ethos_U55_High_End_Embedded", "memory_mode": "Shared_Sram"}
    assert parse_target({**base, "npu": npu}, "b.toml").npu == npu
    with pytest.raises(EdgembError, match=r"npu\.accelerator"):
        parse_target({**base, "npu": {**npu, "accelerator": "ethos-u99"}}, "b.toml")
    with pytest.raises(EdgembError, match=r"unknown field `npu\.clock`"):
        parse_target({**base, "npu": {**npu, "clock": 1}}, "b.toml")


def test_unknown_system_config_names_the_ones_vela_has(tmp_path):
    from edgemb.backends.vela_backend import write_vela_ini

    with pytest.raises(EdgembError, match="Ethos_U55_High_End_Embedded"):
        write_vela_ini({"system_config": "Ethos_U55_Turbo", "memory_mode": "Shared_Sram"}, tmp_path / "v.ini")


def test_models_fit_lists_zoo_entries_for_a_board(capsys):
    assert cli.main(["models", "--fit", "corstone-300"]) == 0
    out = capsys.readouterr().out
    assert "v2_0.35@96" in out and "fits" in out and "estimated (Vela performance model)" in out
    assert cli.main(["models", "--fit", "x86"]) == 2
    assert "Ethos-U board" in capsys.readouterr().err


def test_reference_runner_is_the_source_model(built):
    out, record = built["imx93"]
    runner = VelaBackend().load(type("A", (), {"path": out / record["path"]})(), get_target("imx93"))
    x = np.zeros((2, 3, 96, 96), np.float32)
    assert runner.run(x).shape == (2, 10)  # vela/model.int8.tflite: the NPU model itself needs the board


@pytest.mark.slow
def test_deploy_to_an_ethos_u55_board_recommends_by_vela_estimate(tmp_path):
    """`edgemb deploy v2_0.35@96 --target corstone-300`: the Vela artifact wins on its estimated time."""
    from edgemb.stages.deploy import DeploySettings, deploy

    report = deploy(DeploySettings(MODEL, "corstone-300", weights="ref", calib="fashion-mnist:train:64",
                                   eval="fashion-mnist:test:200"), tmp_path, log=lambda _: None)
    by = {a["backend"]: a for a in report["artifacts"]}
    assert set(by) == {"vela", "tflm"}
    vela = by["vela"]
    assert vela["latency_estimate"]["kind"] == ESTIMATE_LABEL and vela["memory"]["fits"]
    assert vela["npu_split"]["cpu"] == 0 and "reference kernels" in vela["parity_note"]
    assert vela["parity"]["n"] == 200 and vela["within_budget"]
    rec = report["recommended"]
    assert (rec["backend"], rec["precision"]) == ("vela", "int8") and "estimated" in rec["reason"].lower()
    assert rec["p50_ms"] == vela["latency_estimate"]["p50_ms"]
    assert "ethos-u-vela" in report["latency_source"] and "published" not in report["latency_source"]
    assert (tmp_path / "corstone-300" / MODEL / "compile" / "vela" / "model_data.cc").exists()
