"""TVM artifacts, the device-side runner, and profiling through real SSH and TVM RPC servers on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import venv
from pathlib import Path

import numpy as np
import pytest

from edgemb.data import load_data
from edgemb.device.devices import SshDevice, SubprocessDevice, open_device
from edgemb.device.runner import elf_arch, percentile_ms
from edgemb.errors import EdgembError
from edgemb.stages.compile import compile_model
from edgemb.zoo.inference import predict
from edgemb.zoo.prepared import prepare_model
from tests.servers import rpc_server, rpc_tracker, sshd, x86_rpc_server_command
from tests.stages import qdq_model

MODEL = "v1_0.25"
EVAL = "fashion-mnist:test:200"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One x86 build (TVM + TFLite, verified here) and one rpi4 TVM build (cross-compiled)."""
    root = tmp_path_factory.mktemp("devices")
    x86 = compile_model(MODEL, "x86", root / "x86", backend="tvm", eval_spec=EVAL,
                        qdq_model=qdq_model(MODEL, "x86", root / "quantize-x86"))
    rpi4 = compile_model(MODEL, "rpi4", root / "rpi4", backend="tvm", eval_spec=EVAL,
                         qdq_model=qdq_model(MODEL, "rpi4", root / "quantize-rpi4"))
    tflite = compile_model(MODEL, "x86", root / "tflite", backend="tflite", eval_spec=EVAL)
    prepared = prepare_model(MODEL, "ref")
    inputs = load_data("fashion-mnist:test:8", prepared.preprocessing).x
    return {"root": root, "x86": x86, "rpi4": rpi4, "tflite": tflite, "inputs": inputs,
            "float": predict(prepared.model, inputs)}


def test_tvm_x86_library_matches_the_float_model(built):
    by = {a["precision"]: a for a in built["x86"]["artifacts"]}
    record = by["fp32"]
    assert record["backend"] == "tvm" and record["status"] == "ok"
    assert record["parity"]["n"] == 200 and record["parity"]["agreement"] >= 0.99
    assert record["parity"]["sqnr_db"] > 60  # the same float math, not an approximation
    assert record["arch"] == "x86_64" and "integer_lowering" not in record
    assert elf_arch(str(built["root"] / "x86" / "model.tvm.so")) == "x86_64"
    int8 = by["int8"]  # edgemb's QDQ model lowered to integer kernels, verified on the same samples
    assert int8["status"] == "ok" and int8["parity"]["n"] == 200 and int8["parity"]["agreement"] >= 0.98
    ops = int8["integer_lowering"]["integer_ops"]  # MobileNetV1: 13 pointwise + 13 depthwise + the stem
    assert ops["pointwise"] == 13 and ops["depthwise"] + ops["depthwise-strided"] == 13


def test_tvm_rpi4_library_is_cross_compiled_for_aarch64(built):
    assert {a["precision"] for a in built["rpi4"]["artifacts"]} == {"fp32", "int8"}
    for record in built["rpi4"]["artifacts"]:
        assert record["status"] == "needs-device" and record["arch"] == "aarch64"
        assert record["tvm_target"]["mcpu"] == "cortex-a72" and record["tvm_target"]["mtriple"] == "aarch64-linux-gnu"
        assert elf_arch(str(built["root"] / "rpi4" / record["path"])) == "aarch64"


def test_runner_on_this_host_gives_outputs_and_percentiles(built):
    device = open_device("local")
    m = device.measure(built["root"] / "x86" / "model.tvm.so", built["inputs"], runs=20, warmup=2, threads=1)
    assert m.output().shape == (8, 10)
    np.testing.assert_allclose(m.output(), built["float"], atol=1e-3)
    lat = m.latency()
    assert lat["runs"] == 20 and len(lat["samples_ms"]) == 20 and not lat["emulated"]
    assert 0 < lat["p50_ms"] <= lat["p90_ms"] <= lat["p99_ms"] == max(lat["samples_ms"])


def test_percentiles_are_nearest_rank():
    samples = [i / 1000 for i in range(1, 101)]  # 1..100 ms
    assert (percentile_ms(samples, 0.5), percentile_ms(samples, 0.9), percentile_ms(samples, 0.99)) == (50, 90, 99)


def test_runner_refuses_a_library_for_another_architecture(built):
    with pytest.raises(EdgembError, match="compiled for aarch64 but this board is x86_64"):
        open_device("local").measure(built["root"] / "rpi4" / "model.tvm.so", built["inputs"], 2, 0, 1)


def test_runner_names_the_pip_package_a_board_lacks(built, tmp_path):
    venv.create(tmp_path / "bare", with_pip=False)  # a board with Python but no numpy
    device = SubprocessDevice("bare-board", [str(tmp_path / "bare" / "bin" / "python")])
    with pytest.raises(EdgembError, match=r"pip install numpy"):
        device.measure(built["root"] / "tflite" / "model.fp32.tflite", built["inputs"], 2, 0, 1)


def test_profile_cli_writes_the_latency_table(built, tmp_path):
    out = tmp_path / "profile.json"
    result = subprocess.run([sys.executable, "-m", "edgemb", "profile", str(built["root"] / "x86" / "model.tvm.so"),
                             "--runs", "10", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "p50 ms" in result.stdout and "model.tvm.so" in result.stdout
    report = json.loads(out.read_text())
    assert report["model"] == f"{MODEL}@64" and report["latency"]["runs"] == 10 and report["arch"] == "x86_64"


def test_bad_device_uris_are_usage_errors():
    for uri, message in [("ftp://x", "unknown device"), ("rpc://host:1", "expected rpc://"),
                         ("ssh://", "expected ssh://")]:
        with pytest.raises(EdgembError, match=message):
            open_device(uri)


def test_ssh_profiling_through_a_real_openssh_server(built, tmp_path):
    with sshd(tmp_path / "sshd") as (port, key):
        uri = f"ssh://root@127.0.0.1:{port}?identity={key}&python={sys.executable}"
        device = open_device(uri)
        before = set(Path("/tmp").glob("edgemb.*"))
        for artifact in ("tflite/model.fp32.tflite", "x86/model.tvm.so"):
            m = device.measure(built["root"] / artifact, built["inputs"], runs=5, warmup=1, threads=1)
            np.testing.assert_allclose(m.output(), built["float"], atol=1e-3)
            assert m.latency()["device"] == uri and m.latency()["runs"] == 5
        # A board whose Python lacks a runtime: named pip package, and the remote folder is gone.
        venv.create(tmp_path / "bare", with_pip=False)
        bare = SshDevice(uri, "root", "127.0.0.1", port, str(key), str(tmp_path / "bare" / "bin" / "python"))
        with pytest.raises(EdgembError, match=r"pip install numpy"):
            bare.measure(built["root"] / "tflite" / "model.fp32.tflite", built["inputs"], 2, 0, 1)
        assert set(Path("/tmp").glob("edgemb.*")) == before, "the remote work folder was left behind"


def test_ssh_unreachable_host_is_a_clear_error(built, tmp_path):
    with sshd(tmp_path / "sshd") as (port, key):
        pass  # the port is free again: nothing listens there now
    device = SshDevice(f"ssh://root@127.0.0.1:{port}", "root", "127.0.0.1", port, str(key), retries=1)
    started = time.monotonic()
    with pytest.raises(EdgembError, match=r"cannot reach root@127\.0\.0\.1"):
        device.measure(built["root"] / "x86" / "model.tvm.so", built["inputs"], 2, 0, 1)
    assert time.monotonic() - started < 60


def test_tvm_rpc_tracker_profiling_on_loopback(built):
    with rpc_tracker() as port, rpc_server(x86_rpc_server_command(port, "x86-test"), port, "x86-test"):
        device = open_device(f"rpc://127.0.0.1:{port}/x86-test")
        m = device.measure(built["root"] / "x86" / "model.tvm.so", built["inputs"], runs=10, warmup=1, threads=1)
        np.testing.assert_allclose(m.output(), built["float"], atol=1e-3)
        assert m.latency()["runs"] == 10 and m.latency()["p50_ms"] > 0
        with pytest.raises(EdgembError, match="no free board with key 'absent'"):
            open_device(f"rpc://127.0.0.1:{port}/absent?timeout=2").measure(
                built["root"] / "x86" / "model.tvm.so", built["inputs"], 2, 0, 1)
        with pytest.raises(EdgembError, match=r"TVM libraries \(\.so\)"):
            device.measure(built["root"] / "tflite" / "model.fp32.tflite", built["inputs"], 2, 0, 1)


def test_unreachable_tracker_fails_fast(built):
    with rpc_tracker() as port:
        pass
    started = time.monotonic()
    with pytest.raises(EdgembError, match="no TVM RPC tracker answers"):
        open_device(f"rpc://127.0.0.1:{port}/x").measure(built["root"] / "x86" / "model.tvm.so", built["inputs"],
                                                         2, 0, 1)
    assert time.monotonic() - started < 30


def test_artifacts_are_verified_on_every_sample_unless_the_engine_is_slow():
    # the count comes from the engine's measured speed, not from its name: a fast TVM library gets all 10,000
    from edgemb.stages.compile import VERIFY_SECONDS, verification_count

    assert VERIFY_SECONDS == 20.0
    assert verification_count(0.00022, 10_000) == 10_000, "TVM int8 at 0.22 ms: every sample"
    assert verification_count(0.015, 10_000) == 1333, "15 ms per sample: what 20 s buys"
    assert verification_count(0.5, 10_000) == 1000, "never fewer than 1,000"
    assert verification_count(0.5, 200) == 200 and verification_count(0.0, 300) == 300
