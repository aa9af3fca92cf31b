"""TVM int8: the Relax rewrite of edgemb's QDQ graph is exact against onnxruntime's integer kernels.

Each layer type gets a tiny trained-free graph (random weights are fine here: the check is arithmetic, not
accuracy) quantized by edgemb's own QDQ builder, with a Q/DQ pair appended to the output so the layer under
test is a quantized one; TVM's integer library and onnxruntime (QLinearConv/QLinearAdd fusions) must agree to
within one int8 step, element by element. Uint8 and int8 activations are both covered.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import helper
from torch import nn

from edgemb.backends.tvm_backend import compile_library, import_onnx
from edgemb.backends.tvm_lowering import fixed_point, requantize_reference
from edgemb.errors import EdgembError
from edgemb.onnx_graph import Graph, session
from edgemb.quant.qdq import QuantConfig, activation_tensors, build_qdq
from edgemb.quant.ranges import choose_range, collect_stats, quant_params
from edgemb.stages.export import export_simplified
from tests.stages import qdq_as_float_session

pytest.importorskip("tvm")
RESOLUTION = 16


class Pointwise(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.pw = nn.Sequential(nn.Conv2d(8, 24, 1), nn.ReLU6())

    def forward(self, x):
        return self.pw(self.stem(x))


class Depthwise(nn.Module):
    def __init__(self, stride: int = 1):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 1)
        self.dw = nn.Sequential(nn.Conv2d(16, 16, 3, stride, 1, groups=16), nn.ReLU6())

    def forward(self, x):
        return self.dw(self.stem(x))


class StridedStem(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU6())

    def forward(self, x):
        return self.conv(x)


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.block = nn.Sequential(nn.Conv2d(16, 32, 1), nn.ReLU6(), nn.Conv2d(32, 32, 3, 1, 1, groups=32),
                                   nn.ReLU6(), nn.Conv2d(32, 16, 1))

    def forward(self, x):
        y = self.stem(x)
        return y + self.block(y)


class HardSwishSE(nn.Module):
    """MobileNetV3's pieces: hard-swish after a conv, squeeze-excitation with a hard-sigmoid gate."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.Hardswish())
        self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(16, 8, 1), nn.ReLU(), nn.Conv2d(8, 16, 1),
                                nn.Hardsigmoid())
        self.project = nn.Conv2d(16, 16, 1)

    def forward(self, x):
        y = self.conv(x)
        return self.project(y * self.se(y))


def quantized_graph(module: nn.Module, folder, activation_type: str, resolution: int = RESOLUTION,
                    weight_max: int = 127,
                    wide: Callable[[Graph], list[str]] | None = None) -> tuple[onnx.ModelProto, float]:
    """edgemb's QDQ model of `module` with its output quantized too; returns (model, output scale).

    `wide` picks activations of the float graph to raise to 16 bits, as the quantize stage's rescue does."""
    torch.manual_seed(0)
    for m in module.modules():  # non-trivial biases so the bias path is exercised
        if isinstance(m, nn.Conv2d) and m.bias is not None:
            nn.init.uniform_(m.bias, -0.5, 0.5)
    path = folder / "float.onnx"
    export_simplified(module.eval(), resolution, path)
    graph = Graph.load(path)
    calibration = np.random.default_rng(1).standard_normal((16, 3, resolution, resolution)).astype(np.float32)
    names = [*activation_tensors(graph), graph.output_name]
    stats = collect_stats(graph.model, calibration, names, histograms=True)
    ranges = {n: choose_range(stats[n], "minmax", activation_type) for n in names}
    config = QuantConfig(method="minmax", activation_type=activation_type, weight_max=weight_max,
                         wide_tensors=[] if wide is None else wide(graph))
    model = build_qdq(graph, ranges, config)
    scale, zero = quant_params(*ranges[graph.output_name], activation_type)
    zp_type = onnx.TensorProto.UINT8 if activation_type == "uint8" else onnx.TensorProto.INT8
    out = model.graph.output[0].name
    model.graph.node[-1].output[0] = "pre_output"
    model.graph.initializer.extend([helper.make_tensor("out_scale", onnx.TensorProto.FLOAT, [], [scale]),
                                    helper.make_tensor("out_zp", zp_type, [], [zero])])
    model.graph.node.extend([
        helper.make_node("QuantizeLinear", ["pre_output", "out_scale", "out_zp"], ["out_q"]),
        helper.make_node("DequantizeLinear", ["out_q", "out_scale", "out_zp"], [out])])
    return model, scale


def host_spec() -> dict:
    import tvm

    return {"kind": "llvm", "mcpu": tvm.target.codegen.llvm_get_system_cpu(), "num-cores": 1}


def integer_vs_onnxruntime(module: nn.Module, folder, activation_type: str = "uint8", spec: dict | None = None,
                           dot="auto", weight_max: int = 127, wide: Callable[[Graph], list[str]] | None = None):
    """(TVM int8 output, onnxruntime output, output scale, lowering report) on fresh inputs.

    `spec`/`dot` build for another x86 target this host can run (AVX2 code on an AVX-512 host); `wide` raises
    activations to 16 bits (see quantized_graph). The compiled Relax module is left in `.module`."""
    model, scale = quantized_graph(module, folder, activation_type, weight_max=weight_max, wide=wide)
    qdq = folder / "model.qdq.onnx"
    onnx.save(model, str(qdq))
    import tvm
    from tvm import relax

    spec = spec or host_spec()
    mod, report = import_onnx(qdq, spec, integer=True, dot=dot)
    lib = folder / "model.so"
    compile_library(mod, spec, None, lib)
    integer_vs_onnxruntime.last = (report, lib)
    integer_vs_onnxruntime.module = mod

    vm = relax.VirtualMachine(tvm.runtime.load_module(str(lib)), tvm.cpu())
    ort = reference_session(qdq, weight_max)
    x = np.random.default_rng(2).standard_normal((4, 3, RESOLUTION, RESOLUTION)).astype(np.float32)
    ours = np.concatenate([vm["main"](tvm.runtime.tensor(s[None])).numpy() for s in x])
    theirs = np.concatenate([ort.run(None, {"input": s[None]})[0] for s in x])
    return ours, theirs, scale, report.integer_ops


def host_weight_max() -> int:
    """The widest int8 weights this host's integer kernels sum exactly (63 on AVX2 without VNNI, else 127)."""
    from edgemb.quant.isa import host_scheme

    return host_scheme().weight_max


def reference_session(qdq: Path, weight_max: int):
    """onnxruntime on this host as the reference: its integer kernels where they are exact, else the QDQ model
    run as float (no graph fusion). Without VNNI its u8 x s8 kernels saturate the int16 pair sums of 8-bit
    weights (31 steps off on a Zen 3 host), so they are no reference for 8-bit weights there."""
    return qdq_as_float_session(qdq) if weight_max > host_weight_max() else session(qdq)


def assert_within_one_step(ours: np.ndarray, theirs: np.ndarray, scale: float) -> None:
    steps = np.abs(ours - theirs) / scale
    assert steps.max() <= 1.0 + 1e-3, f"max difference {steps.max():.2f} int8 steps"
    assert np.mean(steps > 0.5) < 0.05, "more than 5% of outputs differ by a step: not rounding, a bug"


def host_kernel():
    from edgemb.backends.tvm_dot import spec_kernel

    return spec_kernel(host_spec())


def disassembly(lib, arch: str = "x86_64") -> str:
    """`objdump -d` of a built library (Debian's aarch64 binutils for ARM, part of g++-aarch64-linux-gnu)."""
    tool = "objdump" if arch == "x86_64" else f"{arch}-linux-gnu-objdump"
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed")
    return subprocess.run([tool, "-d", str(lib)], check=True, capture_output=True, text=True).stdout


def mnemonics(asm: str) -> set[str]:
    """The instruction names in an objdump listing."""
    names = set()
    for line in asm.splitlines():
        fields = line.split("\t")
        if len(fields) >= 3 and fields[2].strip():
            names.add(fields[2].split()[0])
    return names


def test_dot_product_kernels_are_chosen_from_the_isa():
    from edgemb.backends.tvm_dot import KERNELS, choose_kernel
    from edgemb.targets import get_target

    assert choose_kernel(("avx2", "avx512f", "avx512bw", "avx512_vnni"), "x86_64") is KERNELS["vnni"]
    assert choose_kernel(("avx2", "avx512bw"), "x86_64") is KERNELS["avx512"]
    assert choose_kernel(("sse4_2", "avx2"), "x86_64") is KERNELS["avx2"]
    assert choose_kernel(("sse4_2",), "x86_64") is None
    rpi4, rpi5 = get_target("rpi4"), get_target("rpi5")
    assert choose_kernel(rpi4.isa, rpi4.arch) is KERNELS["neon"]
    assert choose_kernel(rpi5.isa, rpi5.arch) is KERNELS["sdot"]
    from edgemb.backends.tvm_dot import spec_kernel

    assert spec_kernel({"kind": "llvm", "mcpu": "haswell"}) is KERNELS["avx2"]  # another CPU: LLVM's features
    assert spec_kernel({"kind": "llvm", "mcpu": "sapphirerapids"}) is KERNELS["vnni"]
    assert spec_kernel({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a72"}) is KERNELS["neon"]


def test_avx2_kernel_is_exact_with_seven_bit_weights_and_refuses_eight(tmp_path):
    """vpmaddubsw (AVX2, built for haswell, run here) is exact with the quantizer's 7-bit weights; with 8-bit
    weights whose pair sums would saturate int16, the layer stays on the widening path."""
    from edgemb.backends.tvm_dot import KERNELS

    haswell = {"kind": "llvm", "mcpu": "haswell", "num-cores": 1}
    ours, theirs, scale, _ = integer_vs_onnxruntime(Pointwise(), tmp_path, spec=haswell, dot=KERNELS["avx2"],
                                                    weight_max=63)
    report, lib = integer_vs_onnxruntime.last
    assert report.dot_ops == {"full": 1, "pointwise": 1}, report.as_dict()  # the RGB stem padded to 4 channels
    assert_within_one_step(ours, theirs, scale)
    names = mnemonics(disassembly(lib))
    assert "vpmaddubsw" in names and not any(n.startswith("vpdpbusd") for n in names)
    (tmp_path / "8bit").mkdir()  # a new library path: dlopen would hand back the first library
    ours, theirs, scale, _ = integer_vs_onnxruntime(Pointwise(), tmp_path / "8bit", spec=haswell,
                                                    dot=KERNELS["avx2"])
    assert integer_vs_onnxruntime.last[0].dot_ops == {}
    assert_within_one_step(ours, theirs, scale)


def mobilenet_qdq(folder, weight_max: int = 127) -> Path:
    """A small real network: MobileNetV2 0.35 (random weights) at 64x64, edgemb's QDQ."""
    from edgemb.zoo.registry import parse_model_name

    model, _ = quantized_graph(parse_model_name("v2_0.35").build(10), folder, "uint8", resolution=64,
                               weight_max=weight_max)
    path = folder / "v2.qdq.onnx"
    onnx.save(model, str(path))
    return path


def test_host_mobilenet_library_uses_the_dot_product_instruction(tmp_path):
    """The host's library (v2_0.35 at 64) has its pointwise convs on vpdpbusd (VNNI) or vpmaddubsw (AVX2)."""
    kernel = host_kernel()
    if kernel is None:
        pytest.skip("this host has no int8 dot-product instruction TVM can use")
    mod, report = import_onnx(mobilenet_qdq(tmp_path, host_weight_max()), host_spec(), integer=True)
    assert report.dot_ops.get("pointwise", 0) + report.dot_ops.get("pointwise-strided", 0) >= 30, report.as_dict()
    assert report.dot_ops.get("full-strided") == 1  # the RGB stem, given a zero-weight 4th channel
    assert report.integer_ops["depthwise"] >= 10 and "depthwise" not in report.dot_ops  # its own kernel
    compile_library(mod, host_spec(), None, tmp_path / "v2.so")
    assert kernel.instruction in mnemonics(disassembly(tmp_path / "v2.so"))


@pytest.mark.parametrize(("board", "wanted", "absent"), [("rpi4", {"smull", "saddlp"}, {"sdot"}),
                                                          ("rpi5", {"sdot"}, set())])
def test_arm_libraries_use_neon_integer_kernels(tmp_path, board, wanted, absent):
    """Cross-compiled v2_0.35@64: Cortex-A72 (rpi4) multiplies bytes with NEON smull and adds pairs with saddlp
    (its Armv8.0 has no dot product); Cortex-A76 (rpi5, +dotprod) uses sdot."""
    from edgemb.backends.tvm_backend import CROSS_COMPILERS, tvm_target_dict
    from edgemb.backends.tvm_dot import choose_kernel
    from edgemb.targets import get_target

    if shutil.which(CROSS_COMPILERS["aarch64"][0]) is None:
        pytest.skip("aarch64 cross compiler not installed")
    target = get_target(board)
    spec = tvm_target_dict(target)
    mod, report = import_onnx(mobilenet_qdq(tmp_path), spec, integer=True,
                              dot=choose_kernel(target.isa, target.arch))
    assert report.dot_ops.get("pointwise", 0) >= 30, report.as_dict()
    compile_library(mod, spec, None, tmp_path / f"{board}.so")
    names = mnemonics(disassembly(tmp_path / f"{board}.so", "aarch64"))
    assert wanted <= names and not absent & names, sorted(wanted - names)


@pytest.mark.parametrize(("module", "kind"), [(Pointwise, "pointwise"), (Depthwise, "depthwise"),
                                              (StridedStem, "full-strided")])
def test_integer_conv_matches_onnxruntime(tmp_path, module, kind):
    ours, theirs, scale, ops = integer_vs_onnxruntime(module(), tmp_path)
    assert ops.get(kind, 0) >= 1, ops
    assert_within_one_step(ours, theirs, scale)


def test_strided_depthwise_with_int8_activations(tmp_path):
    ours, theirs, scale, ops = integer_vs_onnxruntime(Depthwise(stride=2), tmp_path, "int8")
    assert ops.get("depthwise-strided", 0) == 1, ops
    assert_within_one_step(ours, theirs, scale)


def test_residual_add_is_integer_and_exact(tmp_path):
    ours, theirs, scale, ops = integer_vs_onnxruntime(Residual(), tmp_path)
    assert ops.get("add") == 1 and ops.get("depthwise") == 1, ops
    assert_within_one_step(ours, theirs, scale)


def test_hard_swish_and_squeeze_excitation_match(tmp_path):
    ours, theirs, scale, ops = integer_vs_onnxruntime(HardSwishSE(), tmp_path, weight_max=host_weight_max())
    assert ops.get("full", 0) == 1 and ops.get("pointwise", 0) >= 3, ops  # SE convs and projection lowered
    if host_kernel() is not None:  # the 3-channel conv padded to 4 channels for the dot product
        assert integer_vs_onnxruntime.last[0].dot_ops.get("full") == 1
    assert_within_one_step(ours, theirs, scale)


def test_fixed_point_requantize_matches_float_rounding():
    rng = np.random.default_rng(0)
    multipliers = np.exp(rng.uniform(np.log(1e-5), np.log(4.0), 64))
    mantissa, shift = fixed_point(multipliers)
    assert np.all(np.abs(mantissa / np.exp2(shift) / multipliers - 1) < 2.0**-29)
    acc = rng.integers(-(2**20), 2**20, (1, 64, 3, 3))
    got = requantize_reference(acc, mantissa, shift, zero=3, lo=-128, hi=127)
    want = np.clip(np.round(acc * multipliers.reshape(1, -1, 1, 1)) + 3, -128, 127)
    assert np.abs(got - want).max() <= 1
    with pytest.raises(ValueError, match="multipliers"):
        fixed_point(np.array([0.0]))


def test_tuning_picks_dominant_tasks_and_the_rpc_board(tmp_path, monkeypatch):
    """Trials go to the tasks with the most FLOPs x calls; $EDGEMB_TVM_TUNE_RPC names the board that measures them.

    (A full tuning run over a loopback tracker took about 6 minutes for 2 trials on this shared 2-core host, too
    slow for CI; the README documents the real-board procedure.)"""
    import tvm

    from edgemb.backends.tvm_backend import dominant_tasks, tuning_device

    model, _ = quantized_graph(Residual(), tmp_path, "uint8")
    qdq = tmp_path / "model.qdq.onnx"
    onnx.save(model, str(qdq))
    host = {"kind": "llvm", "mcpu": tvm.target.codegen.llvm_get_system_cpu(), "num-cores": 1}
    mod, _ = import_onnx(qdq, host, integer=True, dot=None)  # the widening path: every conv is a task
    everything = dominant_tasks(mod, host, share=1.0)
    kept = dominant_tasks(mod, host)
    scores = [score for _, score in everything]
    assert scores == sorted(scores, reverse=True) and len(kept) < len(everything)
    assert sum(s for _, s in kept) >= 0.97 * sum(scores)
    from edgemb.backends.tvm_dot import KERNELS

    mod, _ = import_onnx(qdq, host, integer=True, dot=KERNELS["avx2"])  # hand-scheduled kernels are no task
    assert not any("dot" in t.task_name or "depthwise" in t.task_name for t, _ in dominant_tasks(mod, host, 1.0))
    monkeypatch.delenv("EDGEMB_TVM_TUNE_RPC", raising=False)
    assert tuning_device(host) is None
    monkeypatch.setenv("EDGEMB_TVM_TUNE_RPC", "rpc://tracker.local:9190/rpi5")
    board = tuning_device(host)
    assert (board.tracker_host, board.tracker_port, board.key) == ("tracker.local", 9190, "rpi5")
    monkeypatch.setenv("EDGEMB_TVM_TUNE_RPC", "ssh://me@board")
    with pytest.raises(EdgembError, match="must be rpc://"):
        tuning_device(host)


def test_default_schedules_cover_every_convolution_and_float_nhwc_is_exact(tmp_path):
    """Untuned builds are not naive loops: the rule schedules each NHWC conv (fp32 and int8) and keeps results."""
    import tvm
    from tvm import relax

    from edgemb.backends.tvm_schedules import default_schedule_pass

    host = {"kind": "llvm", "mcpu": tvm.target.codegen.llvm_get_system_cpu(), "num-cores": 1}
    model, _ = quantized_graph(Residual(), tmp_path, "uint8")
    qdq = tmp_path / "model.qdq.onnx"
    onnx.save(model, str(qdq))
    for path, integer in ((tmp_path / "float.onnx", False), (qdq, True)):
        mod, _ = import_onnx(path, host, integer=integer)
        with tvm.target.Target(host) as target:
            scheduled = default_schedule_pass(target)(mod)
        convs = [gv for gv in scheduled.get_global_vars() if "conv2d" in gv.name_hint]
        assert convs and all(scheduled[gv].attrs.get("tirx.is_scheduled") for gv in convs)
        assert all("nhwc" in scheduled[gv].script() for gv in convs)
    mod, _ = import_onnx(tmp_path / "float.onnx", host)
    compile_library(mod, host, None, tmp_path / "float.so")
    vm = relax.VirtualMachine(tvm.runtime.load_module(str(tmp_path / "float.so")), tvm.cpu())
    x = np.random.default_rng(4).standard_normal((1, 3, RESOLUTION, RESOLUTION)).astype(np.float32)
    want = session(tmp_path / "float.onnx").run(None, {"input": x})[0]
    np.testing.assert_allclose(vm["main"](tvm.runtime.tensor(x)).numpy(), want, rtol=1e-4, atol=1e-4)


class Classifier(nn.Module):
    """MobileNet's head: a pointwise conv, global pooling, a linear layer with float logits out."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU6(), nn.Conv2d(16, 64, 1), nn.ReLU6())
        self.fc = nn.Linear(64, 40)

    def forward(self, x):
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


def test_classifier_matmul_runs_on_the_dot_product_kernel(tmp_path):
    if host_kernel() is None:
        pytest.skip("this host has no int8 dot-product instruction TVM can use")
    ours, theirs, scale, ops = integer_vs_onnxruntime(Classifier(), tmp_path, weight_max=host_weight_max())
    assert integer_vs_onnxruntime.last[0].dot_ops.get("matmul") == 1, ops
    assert_within_one_step(ours, theirs, scale)


class ResidualHead(Residual):
    """The residual block, then a pointwise conv reading the sum (as the next MobileNetV2 block does)."""

    def __init__(self):
        super().__init__()
        self.head = nn.Conv2d(16, 16, 1)

    def forward(self, x):
        return self.head(super().forward(x))


def residual_sum(graph: Graph) -> list[str]:
    """The residual add's output: the add writes 16 bits and the head conv reads them."""
    return [next(n for n in graph.graph.node if n.op_type == "Add").output[0]]


def block_output(graph: Graph) -> list[str]:
    """The block's last pointwise conv's output (the add's operand the stem does not give): 8 bits in, 16 out."""
    add = next(n for n in graph.graph.node if n.op_type == "Add")
    return [next(t for t in add.input if len(graph.consumers[t]) == 1)]


def classifier_input(graph: Graph) -> list[str]:
    """The pooled features the classifier's Gemm reads."""
    return [next(n for n in graph.graph.node if n.op_type == "Gemm").input[0]]


@pytest.mark.parametrize(("module", "wide", "in_float"), [
    (ResidualHead, residual_sum, {"add": 1, "pointwise": 1}),
    (ResidualHead, block_output, {"add": 1}),
    (Classifier, classifier_input, {"matmul": 1})])
def test_ops_on_16bit_activations_stay_nhwc_scheduled_and_match_onnxruntime(tmp_path, module, wide, in_float):
    """The quantize stage's rescue raises an activation to uint16 (opset 21 Q/DQ). A conv reading it runs as a float
    NHWC conv (its int8 weights dequantized), a conv writing it stays integer, an add touching it runs in float
    NHWC, a matmul reading it is a float matmul: every conv is lowered one way or the other, float_ops counts the
    float ones, no NCHW conv is left for scalar loops (it was: V2@224 int8 19 ms instead of ~1.1 ms), and outputs
    still agree with onnxruntime on the same QDQ model within one int8 step."""
    import tvm

    from edgemb.backends.tvm_schedules import default_schedule_pass

    ours, theirs, scale, _ = integer_vs_onnxruntime(module(), tmp_path, wide=wide)
    report, _ = integer_vs_onnxruntime.last
    model = onnx.load(str(tmp_path / "model.qdq.onnx"))
    assert [i.name for i in model.graph.initializer if i.data_type == onnx.TensorProto.UINT16] \
        == [f"{t}_zero_point" for t in wide(Graph.load(tmp_path / "float.onnx"))]  # one 16-bit Q/DQ pair
    assert report.float_ops == in_float and report.as_dict()["float_ops"] == in_float, report.as_dict()
    lowered = [n for ops in (report.integer_ops, report.float_ops) for kind, n in ops.items()
               if kind not in ("add", "matmul")]
    assert sum(lowered) == sum(n.op_type == "Conv" for n in model.graph.node), report.as_dict()
    assert report.integer_ops.get("add", 0) + report.float_ops.get("add", 0) == sum(
        n.op_type == "Add" for n in model.graph.node)
    assert "16-bit activations" in report.float_note()
    with tvm.target.Target(host_spec()) as target:
        scheduled = default_schedule_pass(target)(integer_vs_onnxruntime.module)
    functions = {gv.name_hint: scheduled[gv] for gv in scheduled.get_global_vars()
                 if isinstance(scheduled[gv], tvm.tirx.PrimFunc)}
    assert not [name for name, func in functions.items() if "conv2d_nchw" in func.script()]
    convs = [name for name in functions if "conv2d" in name]  # integer (dot or int32) and float convs alike
    assert convs and all(functions[name].attrs.get("tirx.is_scheduled") for name in convs)
    assert all("conv2d_nhwc" in functions[name].script() for name in convs)
    assert_within_one_step(ours, theirs, scale)


def test_int8_activations_enter_the_unsigned_dot_product_shifted(tmp_path):
    """int8 activations on VNNI/AVX2 (u8 x s8) enter as x + 128 with the zero point moved alike: still exact."""
    if host_kernel() is None or host_kernel().data_dtype != "uint8":
        pytest.skip("no unsigned-byte dot product on this host")
    ours, theirs, scale, _ = integer_vs_onnxruntime(Pointwise(), tmp_path, "int8", weight_max=host_weight_max())
    assert integer_vs_onnxruntime.last[0].dot_ops == {"full": 1, "pointwise": 1}
    assert_within_one_step(ours, theirs, scale)


@pytest.mark.slow
@pytest.mark.parametrize("board", ["rpi4", "rpi5"])
def test_arm_dot_product_kernels_are_exact_on_the_emulated_board(tmp_path, board):
    """The NEON (rpi4) and sdot (rpi5) libraries, uint8 activations entering as x - 128, run under qemu-user
    and agree with onnxruntime on x86 within one int8 step (pointwise, stem, depthwise, residual add)."""
    from edgemb.backends.tvm_backend import CROSS_COMPILERS, tvm_target_dict
    from edgemb.backends.tvm_dot import choose_kernel
    from edgemb.device.devices import open_device
    from edgemb.targets import get_target

    if shutil.which(CROSS_COMPILERS["aarch64"][0]) is None or shutil.which("qemu-aarch64-static") is None:
        pytest.skip("needs the aarch64 cross compiler and qemu-user")
    model, scale = quantized_graph(Residual(), tmp_path, "uint8")
    qdq = tmp_path / "model.qdq.onnx"
    onnx.save(model, str(qdq))
    target = get_target(board)
    spec = tvm_target_dict(target)
    mod, report = import_onnx(qdq, spec, integer=True, dot=choose_kernel(target.isa, target.arch))
    assert report.dot_ops == {"full": 1, "pointwise": 2}, report.as_dict()
    compile_library(mod, spec, None, tmp_path / f"{board}.so")
    x = np.random.default_rng(2).standard_normal((4, 3, RESOLUTION, RESOLUTION)).astype(np.float32)
    ours = open_device(f"emulated:{board}", log=lambda _: None).measure(tmp_path / f"{board}.so", x, 1, 0, 1).output()
    ort = reference_session(qdq, 127)
    theirs = np.concatenate([ort.run(None, {"input": s[None]})[0] for s in x])
    assert_within_one_step(ours, theirs, scale)
