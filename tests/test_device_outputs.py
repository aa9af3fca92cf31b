"""The device side keeps every output, by the model's ONNX output names: a two-head model (a detector's
`cls_logits` and `bbox_regression`) through the device-side runner for each artifact type, profile's
run_on_device and SSH, compared with onnxruntime on this host output by output."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from edgemb.device.devices import Measurement, SshDevice, SubprocessDevice, open_device
from edgemb.device.runner import RuntimeProblem, name_outputs
from edgemb.errors import EdgembError
from edgemb.onnx_graph import session
from edgemb.stages.export import export_simplified, output_names
from edgemb.stages.profile import run_on_device
from tests.servers import rpc_server, rpc_tracker, sshd, x86_rpc_server_command

RESOLUTION = 16
NAMES = ["cls_logits", "bbox_regression"]


class TwoHeads(nn.Module):
    """A detector's shape in miniature: one body, class logits (N, A, 5) and box regressions (N, A, 4)."""

    output_names = tuple(NAMES)

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU())
        self.cls = nn.Conv2d(8, 5, 1)
        self.box = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.body(x)
        n = x.shape[0]
        return (self.cls(f).permute(0, 2, 3, 1).reshape(n, -1, 5),
                self.box(f).permute(0, 2, 3, 1).reshape(n, -1, 4))


@pytest.fixture(scope="module")
def two_heads(tmp_path_factory):
    """The model exported by the project's export path, its inputs, and onnxruntime's outputs on this host."""
    root = tmp_path_factory.mktemp("two-heads")
    torch.manual_seed(0)
    model = TwoHeads().eval()
    onnx_path = export_simplified(model, RESOLUTION, root / "model.onnx")
    x = np.random.default_rng(0).standard_normal((3, 3, RESOLUTION, RESOLUTION)).astype(np.float32)
    ort = session(onnx_path)
    assert [o.name for o in ort.get_outputs()] == NAMES == output_names(model)
    runs = [ort.run(None, {"input": s[None]}) for s in x]
    host = {name: np.concatenate([run[k] for run in runs]) for k, name in enumerate(NAMES)}
    return SimpleNamespace(root=root, model=model, onnx=onnx_path, x=x, host=host)


def assert_matches_host(outputs: dict[str, np.ndarray], host: dict[str, np.ndarray], atol: float = 1e-4) -> None:
    """Both outputs present, in ONNX order, each equal to onnxruntime's output of that name."""
    assert list(outputs) == NAMES
    for name in NAMES:
        assert outputs[name].shape == host[name].shape, name
        np.testing.assert_allclose(outputs[name], host[name], atol=atol, err_msg=name)


def openvino_ir(two_heads) -> Path:
    import openvino as ov

    xml = two_heads.root / "model.xml"
    if not xml.exists():
        ov.save_model(ov.convert_model(str(two_heads.onnx)), str(xml), compress_to_fp16=False)
    return xml


def tflite_flatbuffer(two_heads) -> Path:
    from edgemb.backends.base import BuildInputs
    from edgemb.backends.tflite_backend import float_tflite

    prepared = SimpleNamespace(model=two_heads.model, spec=SimpleNamespace(resolution=RESOLUTION))
    return float_tflite(BuildInputs(prepared, two_heads.onnx, two_heads.x, two_heads.root, two_heads.root))


def tvm_library(two_heads, target: str = "x86") -> Path:
    from edgemb.backends.tvm_backend import compile_library, import_onnx, tvm_target_dict
    from edgemb.targets import get_target

    out = two_heads.root / f"model.{target}.tvm.so"
    if not out.exists():
        spec = tvm_target_dict(get_target(target))
        mod, _ = import_onnx(two_heads.onnx, spec)
        compile_library(mod, spec, None, out)
    return out


ARTIFACTS = {"onnx": lambda t: t.onnx, "openvino": openvino_ir, "tflite": tflite_flatbuffer, "tvm": tvm_library}


@pytest.mark.parametrize("kind", list(ARTIFACTS))
def test_local_runner_returns_every_output_by_name(two_heads, kind):
    artifact = ARTIFACTS[kind](two_heads)
    m = open_device("local").measure(artifact, two_heads.x, runs=2, warmup=0, threads=1, output_names=NAMES)
    assert_matches_host(m.outputs, two_heads.host)
    assert m.result["output_names"] == NAMES
    assert m.result["output_shapes"] == [[3, 64, 5], [3, 64, 4]]
    np.testing.assert_array_equal(m.output("bbox_regression"), m.outputs["bbox_regression"])
    with pytest.raises(EdgembError, match="has 2 outputs"):  # never silently the first
        m.output()


def test_runner_without_names_uses_the_artifacts_own(two_heads):
    m = open_device("local").measure(two_heads.onnx, two_heads.x, runs=0, warmup=0, threads=1)
    assert_matches_host(m.outputs, two_heads.host)


def test_runner_refuses_a_different_number_of_outputs(two_heads):
    with pytest.raises(EdgembError, match=r"has 2 output\(s\) but the model has 1 \(logits\)"):
        open_device("local").measure(two_heads.onnx, two_heads.x, 0, 0, 1, output_names=["logits"])


def test_run_on_device_keeps_every_output_of_every_artifact(two_heads):
    artifacts = {"onnxruntime fp32": two_heads.onnx, "openvino fp32": openvino_ir(two_heads)}
    runs = run_on_device(open_device("local"), artifacts, two_heads.x, runs=2, warmup=0, threads=1,
                         log=lambda _: None, output_names=NAMES)
    for run in runs:
        assert run.error is None, run.error
        assert_matches_host(run.outputs, two_heads.host)
        assert run.latency is not None and run.latency["runs"] == 2
        with pytest.raises(EdgembError, match="has 2 outputs"):
            run.output()


# Starts the device-side runner as a device's command would, logging each start to STARTS; with DIE_IN_JOB=K,
# a `--jobs` process dies inside its K-th job, after that job's outputs.npz is written and before its
# result.json is (a runtime's segfault under qemu-user, in miniature).
RUNNER_WRAPPER = """
import importlib.util, os, sys
with open(os.environ["STARTS"], "a") as log:
    log.write(" ".join(sys.argv[2:3]) + "\\n")
spec = importlib.util.spec_from_file_location("runner", sys.argv[1])
runner = importlib.util.module_from_spec(spec)
spec.loader.exec_module(runner)
original, calls = runner.run_artifact, []

def dying(*args, **kwargs):
    calls.append(1)
    result = original(*args, **kwargs)
    if len(calls) == int(os.environ.get("DIE_IN_JOB", 0)):
        os._exit(139)
    return result

if sys.argv[2] == "--jobs":
    runner.run_artifact = dying
sys.exit(runner.main(sys.argv[2:]))
"""


def wrapped_device(tmp_path, die_in_job: int = 0) -> tuple[SubprocessDevice, Path]:
    """A local device whose runner logs its starts (and may die in a job); the log's path."""
    import os

    wrapper, starts = tmp_path / "runner_wrapper.py", tmp_path / "starts.txt"
    wrapper.write_text(RUNNER_WRAPPER)
    env = {**os.environ, "STARTS": str(starts), "DIE_IN_JOB": str(die_in_job)}
    return SubprocessDevice("local", [sys.executable, str(wrapper)], env), starts


def test_one_runner_process_checks_every_artifact_and_a_bad_one_spoils_none(two_heads, tmp_path):
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"not a model")
    artifacts = [*(make(two_heads) for make in ARTIFACTS.values()), corrupt, tmp_path / "missing.tflite"]
    device, starts = wrapped_device(tmp_path)
    begun: list[int] = []
    answers = device.check_outputs(artifacts, two_heads.x, 1, NAMES, begun.append)
    assert starts.read_text().split() == ["--jobs"], "one runner process for every artifact"
    assert begun == [0, 1, 2, 3, 4], "one progress call per artifact the runner started, in order"
    for artifact, answer in zip(artifacts[:4], answers[:4], strict=True):
        assert isinstance(answer, Measurement), (artifact, answer)
        assert answer.result["runs"] == 0 and answer.result["latency_ms"] == []
        assert_matches_host(answer.outputs, two_heads.host)
    assert isinstance(answers[4], EdgembError) and "cannot load corrupt.onnx" in str(answers[4])
    assert isinstance(answers[5], EdgembError) and "artifact file not found" in str(answers[5])


def test_an_artifact_the_runner_dies_in_is_run_again_alone_and_the_rest_go_on(two_heads, tmp_path):
    """The process dies inside the second job: that artifact is run alone, the third in a new process."""
    artifacts = [two_heads.onnx, openvino_ir(two_heads), tflite_flatbuffer(two_heads)]
    device, starts = wrapped_device(tmp_path, die_in_job=2)
    answers = device.check_outputs(artifacts, two_heads.x, 1, NAMES)
    assert starts.read_text().split() == ["--jobs", str(artifacts[1]), "--jobs"], "batch, job 2 alone, batch"
    for artifact, answer in zip(artifacts, answers, strict=True):
        assert isinstance(answer, Measurement), (artifact, answer)
        assert_matches_host(answer.outputs, two_heads.host)


def test_ssh_board_returns_every_output_by_name(two_heads, tmp_path):
    with sshd(tmp_path / "sshd") as (port, key):
        device = SshDevice(f"ssh://root@127.0.0.1:{port}", "root", "127.0.0.1", port, str(key), sys.executable)
        m = device.measure(two_heads.onnx, two_heads.x, runs=1, warmup=0, threads=1, output_names=NAMES)
    assert_matches_host(m.outputs, two_heads.host)


def test_tvm_rpc_board_returns_every_output_by_name(two_heads):
    library = tvm_library(two_heads)
    with rpc_tracker() as port, rpc_server(x86_rpc_server_command(port, "two-heads"), port, "two-heads"):
        device = open_device(f"rpc://127.0.0.1:{port}/two-heads")
        m = device.measure(library, two_heads.x, runs=2, warmup=0, threads=1, output_names=NAMES)
        # a second session on the same board: the first released it (no waiting for the garbage collector)
        with pytest.raises(EdgembError, match=r"has 2 output\(s\) but the model has 1"):
            device.measure(library, two_heads.x, 1, 0, 1, output_names=["logits"])
    assert_matches_host(m.outputs, two_heads.host)
    assert m.result["output_names"] == NAMES and m.latency()["runs"] == 2


def test_names_are_matched_by_name_where_the_artifact_has_them_else_by_position():
    # OpenVINO-like: each output carries several names, listed in another order than the host's
    own = [("bbox_regression", "/box/Reshape_output_0"), ("cls_logits",)]
    assert name_outputs(own, 2, NAMES) == [("cls_logits", 1), ("bbox_regression", 0)]
    assert name_outputs(None, 2, NAMES) == [("cls_logits", 0), ("bbox_regression", 1)]  # TVM: tuple order
    assert name_outputs([("output_0",), ("output_1",)], 2, NAMES) == [("cls_logits", 0), ("bbox_regression", 1)]
    assert name_outputs(None, 2, None) == [("output_0", 0), ("output_1", 1)]
    with pytest.raises(RuntimeProblem, match=r"has 1 output\(s\) but the model has 2"):
        name_outputs(None, 1, NAMES)


def test_a_classifiers_single_output_is_taken_by_name_or_as_the_only_one():
    logits = np.arange(6, dtype=np.float32).reshape(2, 3)
    m = Measurement({"logits": logits}, {}, "local")
    assert m.output() is logits and m.output("logits") is logits
    with pytest.raises(EdgembError, match="no output 'scores'"):
        m.output("scores")



@pytest.mark.slow
def test_emulated_board_returns_every_output_by_name(two_heads):
    """The aarch64 runtimes under qemu-user (the board is prepared once and cached; see tests/test_emulated.py),
    every artifact type in the one runner process a deploy uses there."""
    device = open_device("emulated:rpi4", log=lambda _: None)
    kinds = {kind: tvm_library(two_heads, "rpi4") if kind == "tvm" else make(two_heads)
             for kind, make in ARTIFACTS.items()}
    answers = device.check_outputs(list(kinds.values()), two_heads.x, 0, NAMES)
    for kind, m in zip(kinds, answers, strict=True):
        assert isinstance(m, Measurement), (kind, m)
        assert m.result["arch"] == "aarch64", kind
        assert_matches_host(m.outputs, two_heads.host, atol=1e-3)
