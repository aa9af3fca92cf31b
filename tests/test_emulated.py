"""The emulated Raspberry Pi 4: rpi4 artifacts run on an aarch64 Debian under qemu-user and match x86.

Subset: the first 200 Fashion-MNIST test images (EMULATED_EVAL), for v2_1.0's TFLite, TVM and OpenVINO fp32
artifacts. Preparing the board downloads Debian arm64 packages and aarch64 wheels once (cached).
"""

from __future__ import annotations

import numpy as np
import pytest

from edgemb.data import load_data
from edgemb.device.devices import open_device
from edgemb.device.emulate import prepare_board
from edgemb.errors import EdgembError
from edgemb.metrics import parity
from edgemb.stages.compile import compile_model
from edgemb.zoo.inference import predict
from edgemb.zoo.prepared import prepare_model
from tests.servers import free_port, rpc_server, rpc_tracker
from tests.stages import qdq_model

pytestmark = pytest.mark.slow
MODEL = "v2_1.0"
EMULATED_EVAL = "fashion-mnist:test:200"
FLOAT_ARTIFACTS = {"tflite": "model.fp32.tflite", "tvm": "model.tvm.so", "openvino": "model.fp32.xml"}


@pytest.fixture(scope="module")
def rpi4_build(tmp_path_factory):
    root = tmp_path_factory.mktemp("rpi4")
    qdq = qdq_model(MODEL, "rpi4", root / "quantize")  # TVM's int8 library lowers the quantize stage's model
    for backend in FLOAT_ARTIFACTS:
        compile_model(MODEL, "rpi4", root / backend, backend=backend, eval_spec="fashion-mnist:test:16",
                      qdq_model=qdq)
    prepared = prepare_model(MODEL, "ref")
    data = load_data(EMULATED_EVAL, prepared.preprocessing)
    return root, data, predict(prepared.model, data.x)


def test_openvinos_telemetry_is_declined_on_the_board():
    """It would fork to post to the internet on every compile_model; a fork under qemu-user can deadlock."""
    import subprocess

    board = prepare_board("rpi4", log=lambda _: None)
    probe = ("from openvino_telemetry.utils.opt_in_checker import OptInChecker, ConsentCheckResult; "
             "print(OptInChecker().check(False) == ConsentCheckResult.DECLINED)")
    result = subprocess.run([*board.python(), "-c", probe], capture_output=True, text=True, timeout=600,
                            env=board.environment())
    assert result.stdout.strip() == "True", result.stderr[-800:]


def test_board_is_prepared_once_and_reused():
    board = prepare_board("rpi4", log=lambda _: None)
    assert (board.site_packages.parent / "ready.json").exists()
    assert board.qemu_cpu == "cortex-a72"
    again = prepare_board("rpi4", log=lambda _: pytest.fail("a cached board must not be rebuilt"))
    assert again.rootfs == board.rootfs


@pytest.mark.parametrize("backend", list(FLOAT_ARTIFACTS))
def test_rpi4_float_artifact_on_the_emulated_board_matches_x86(rpi4_build, backend):
    root, data, float_logits = rpi4_build
    device = open_device(None, "rpi4", log=lambda _: None)  # ARM target, no --device: the emulated board
    assert device.uri == "emulated:rpi4" and device.emulated
    m = device.measure(root / backend / FLOAT_ARTIFACTS[backend], data.x, runs=3, warmup=1, threads=0)
    assert m.result["arch"] == "aarch64" and m.output().shape == (len(data.x), 10)
    measured = parity(float_logits, m.output(), data.y)
    assert measured["n"] == 200 and measured["agreement"] >= 0.99, measured
    assert measured["sqnr_db"] > 40, measured  # aarch64 kernels, same float model: tiny rounding differences
    assert m.latency()["emulated"] is True


def test_rpi4_tvm_int8_library_on_the_emulated_board_agrees_with_the_float_model(rpi4_build):
    """The integer-lowered TVM library, cross-compiled for the Cortex-A72 (NEON), runs under emulation."""
    root, data, float_logits = rpi4_build
    device = open_device(None, "rpi4", log=lambda _: None)
    m = device.measure(root / "tvm" / "model.int8.tvm.so", data.x, runs=2, warmup=1, threads=0)
    assert m.result["arch"] == "aarch64" and m.output().shape == (len(data.x), 10)
    measured = parity(float_logits, m.output(), data.y)
    assert measured["n"] == 200 and measured["agreement"] >= 0.99, measured


def test_emulated_board_refuses_an_x86_library(tmp_path):
    compile_model("v1_0.25", "x86", tmp_path / "x86", backend="tvm", eval_spec="fashion-mnist:test:8")
    prepared = prepare_model("v1_0.25", "ref")
    x = load_data("fashion-mnist:test:2", prepared.preprocessing).x
    with pytest.raises(EdgembError, match="compiled for x86_64 but this board is aarch64"):
        open_device("emulated:rpi4").measure(tmp_path / "x86" / "model.tvm.so", x, 1, 0, 0)


def test_tvm_rpc_server_running_on_the_emulated_board(rpi4_build):
    root, data, float_logits = rpi4_build
    board = prepare_board("rpi4", log=lambda _: None)
    with rpc_tracker() as port:
        command = board.rpc_server_command(f"127.0.0.1:{port}", "rpi4-emulated", free_port())
        with rpc_server(command, port, "rpi4-emulated", env=board.environment(), seconds=300):
            device = open_device(f"rpc://127.0.0.1:{port}/rpi4-emulated")
            m = device.measure(root / "tvm" / "model.tvm.so", data.x[:16], runs=3, warmup=1, threads=0)
    np.testing.assert_array_equal(m.output().argmax(1), float_logits[:16].argmax(1))
    assert m.latency()["runs"] == 3
