"""Dot-product int8 convolutions for TVM: the target's 4-wide integer dot-product instruction, by tensorize.

Pointwise and full convolutions whose input channels come in fours (not depthwise, not the 3-channel stem)
are emitted by the integer lowering as one TE function: NHWC activations, weights packed
[KH, KW, O/L, I/4, L, 4] (L output channels per instruction, 4 input channels per lane, the layout of TVM's
OIHW4i16o4i kernels, with the window first), an int32 accumulator tile and the requantize epilogue. Keeping
NHWC (instead of TVM's NCHW16c) means 4 input channels of one pixel are 4 contiguous bytes, broadcast to every
lane, and L output channels are L contiguous int32 lanes: every other kernel of the graph keeps its layout.

The innermost (L output channels x 4 input channels) product is tensorized with, chosen from the target's ISA:

- `vnni`: AVX-512 VNNI `vpdpbusd` (u8 x s8 -> s32, 16 lanes);
- `avx512`: AVX-512BW `vpmaddubsw` + `vpmaddwd` (16 lanes);
- `avx2`: AVX2 `vpmaddubsw` + `vpmaddwd` (8 lanes): u8 x s8 pairs add in saturating int16, exact only when
  255 x (|w0| + |w1|) fits, which the quantizer's 7-bit weights guarantee on such hosts; a convolution whose
  weights do not fit stays on the widening path (checked per layer, never a silently clipped sum);
- `neon`: Armv8.0 NEON `smull` + `saddlp`/`addp` (s8 x s8, 4 lanes: Cortex-A72);
- `sdot`: Armv8.2 `sdot` (s8 x s8, 4 lanes: Cortex-A76 with +dotprod).

The ARM instructions multiply signed bytes, so uint8 activations enter as x - 128 (the zero point moves with
them: exact). The intrinsics are TVM's own `tvm.s_tir.tensor_intrin` descriptions (x86 `dot_16x4_vnni`,
`dot_16x4_avx512`, ARM `dot_4x4_i8i8s32_neon`, `dot_4x4_i8i8s32_sdot`) registered here under edgemb names:
importing that package takes over 30 s (it builds every SME/SVE intrinsic), and TVM 0.27's x86 VNNI
implementation passes `<16 x i32>` where LLVM 22's `vpdpbusd` takes `<64 x i8>` (the build fails). The
AVX2 8x4 intrinsic is not in TVM and is defined here the same way.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import numpy as np

DOT_BLOCK = "conv2d_nhwc_dot"
EPILOGUE_BLOCK = "requantize"
DEPTHWISE_BLOCK = "depthwise_nhwc"
ATTR_DEPTHWISE = "edgemb.depthwise"
ATTR_INTRIN = "edgemb.dot_intrin"
ATTR_LANES = "edgemb.dot_lanes"
ATTR_REGISTERS = "edgemb.dot_registers"
OP_PATTERN_OPAQUE = 8  # relax's OpPatternKind.kOpaque: FuseOps leaves the function as emitted
PAIR_SUM_LIMIT = 32767 // 255  # vpmaddubsw: 255 x (|w0| + |w1|) must fit a saturating int16


@dataclass(frozen=True)
class DotKernel:
    """One target's int8 dot-product instruction as the lowering and the schedule use it."""

    name: str
    instruction: str  # what to look for in the library's assembly
    lanes: int  # int32 output channels per instruction
    data_dtype: str  # activation bytes the instruction reads: uint8 (x86) or int8 (ARM)
    saturates: bool  # int16 pair sums (vpmaddubsw): weights must keep 255 x (|w0| + |w1|) <= 32767
    registers: int  # accumulator registers a tile may hold (the rest: weights, the broadcast activation)

    @property
    def intrin(self) -> str:
        """The TensorIntrin name registered by `register_intrinsics`."""
        return f"edgemb_dot_{self.name}"

    def to_dict(self) -> dict[str, Any]:
        """compile.json form."""
        return {"kernel": self.name, "instruction": self.instruction, "lanes": self.lanes,
                "activations": self.data_dtype}


KERNELS = {
    "vnni": DotKernel("vnni", "vpdpbusd", 16, "uint8", False, 16),
    "avx512": DotKernel("avx512", "vpmaddubsw", 16, "uint8", True, 12),
    "avx2": DotKernel("avx2", "vpmaddubsw", 8, "uint8", True, 8),
    "neon": DotKernel("neon", "smull", 4, "int8", False, 12),
    "sdot": DotKernel("sdot", "sdot", 4, "int8", False, 16),
}


def choose_kernel(isa: tuple[str, ...] | list[str], arch: str) -> DotKernel | None:
    """The dot-product kernel a target's ISA flags allow (None: no 4-wide int8 dot product, widening path)."""
    flags = {f.lstrip("+").lower() for f in isa}
    if arch.startswith("aarch64") or arch.startswith("arm64"):
        if "dotprod" in flags:
            return KERNELS["sdot"]
        return KERNELS["neon"] if "neon" in flags or arch.startswith("aarch64") else None
    if "avx512_vnni" in flags or "avx512vnni" in flags:
        return KERNELS["vnni"]
    if "avx512bw" in flags:
        return KERNELS["avx512"]
    if "avx2" in flags:
        return KERNELS["avx2"]
    return None


def spec_kernel(spec: dict[str, Any]) -> DotKernel | None:
    """The kernel for a TVM target dict: aarch64 from its mattr/mcpu; x86 from this host's ISA (edgemb.hostinfo)
    when the spec names this host's CPU (or none), else from what LLVM says that CPU has.

    Used when the caller has no edgemb Target at hand (tests, scripts); builds pass the Target's own ISA."""
    triple = str(spec.get("mtriple", ""))
    if triple.startswith("aarch64"):
        mattr = list(spec.get("mattr", []))
        if str(spec.get("mcpu", "")) in ("cortex-a76", "cortex-a78", "neoverse-n1", "cortex-a55"):
            mattr.append("dotprod")
        return choose_kernel(mattr, "aarch64")
    import tvm
    from tvm.target.codegen import llvm_cpu_has_features, llvm_get_system_cpu

    mcpu = spec.get("mcpu")
    if mcpu and mcpu != llvm_get_system_cpu():
        target = tvm.target.Target(spec)
        llvm_flags = {"avx512vnni": "avx512_vnni", "avx512bw": "avx512bw", "avx2": "avx2"}
        return choose_kernel([f for k, f in llvm_flags.items() if llvm_cpu_has_features([k], target)], "x86_64")
    from edgemb.hostinfo import read_cpuinfo

    return choose_kernel(read_cpuinfo().isa, "x86_64")


def weights_fit(kernel: DotKernel, w_q: np.ndarray) -> bool:
    """False when a saturating kernel would clip: some pair of adjacent input channels with 255 x (|w0|+|w1|)
    above int16 (8-bit weights quantized for VNNI or ARM and built for AVX2)."""
    if not kernel.saturates:
        return True
    in_channels = w_q.shape[1]
    magnitude = np.abs(w_q.astype(np.int32))
    if in_channels % 2:
        return False
    pairs = magnitude[:, 0::2] + magnitude[:, 1::2]
    return int(pairs.max(initial=0)) <= PAIR_SUM_LIMIT


def byte_offset(x_dtype: str, kernel: DotKernel) -> int:
    """What the kernel adds to each activation byte (and so to its zero point): -128 for uint8 data on a
    signed-byte instruction, +128 for int8 data on an unsigned one, else 0."""
    if x_dtype == kernel.data_dtype:
        return 0
    return -128 if kernel.data_dtype == "int8" else 128


def pack_weights(w_q: np.ndarray, lanes: int) -> np.ndarray:
    """OIHW int8 weights -> [KH, KW, ceil(O/L), I/4, L, 4], output channels padded with zeros."""
    out_channels, in_channels, kh, kw = w_q.shape
    blocks = -(-out_channels // lanes)
    padded = np.zeros((blocks * lanes, in_channels, kh, kw), np.int8)
    padded[:out_channels] = w_q
    packed = padded.reshape(blocks, lanes, in_channels // 4, 4, kh, kw).transpose(4, 5, 0, 2, 1, 3)
    return np.ascontiguousarray(packed)


def eligible(w_q: np.ndarray, groups: int) -> bool:
    """Pointwise and full convolutions with input channels in fours (not depthwise, not the RGB stem)."""
    return groups == 1 and w_q.shape[1] % 4 == 0


def conv_prim_func(x_shape: tuple[int, ...], x_dtype: str, packed_shape: tuple[int, ...], kernel: DotKernel, *,
                   out_channels: int, strides: list[int], padding: list[int], dilation: list[int], pad_value: int,
                   zero: int = 0, lo: int = 0, hi: int = 0, out_dtype: str = "float32"):
    """(TE function (x, packed weights, int32 bias, float32 scale) -> NHWC output, the output's shape).

    The int8 epilogue requantizes as onnxruntime's integer kernels do (MLAS): float32(acc + bias) x scale,
    rounded to nearest even, plus the output zero point, clamped to [lo, hi] (the folded activation) and
    narrowed; 16 float lanes per AVX-512 register, where an int64 fixed-point multiply gets 8. With a float32
    `out_dtype` (a classifier whose logits leave the network in float) it returns (acc + bias) x scale."""
    from tvm import te, topi

    x = te.placeholder(x_shape, x_dtype, name="x")
    w = te.placeholder(packed_shape, "int8", name="w")
    bias = te.placeholder((out_channels,), "int32", name="bias")
    scale = te.placeholder((out_channels,), "float32", name="scale")
    data = x
    if x_dtype != kernel.data_dtype:  # the instruction's bytes: x - 128 (uint8 -> int8) or x + 128 (back)
        offset = -128 if kernel.data_dtype == "int8" else 128
        data = te.compute(x_shape, lambda *i: (x(*i).astype("int16") + offset).astype(kernel.data_dtype),
                          name="convert")
    top, left, bottom, right = padding
    if any(padding):
        data = topi.nn.pad(data, [0, top, left, 0], [0, bottom, right, 0], pad_value=pad_value, name="pad")
    n, height, width, _ = x_shape
    kh, kw, blocks, in_blocks, lanes, _ = packed_shape
    (sh, sw), (dh, dw) = strides, dilation
    out_h = (height + top + bottom - dh * (kh - 1) - 1) // sh + 1
    out_w = (width + left + right - dw * (kw - 1) - 1) // sw + 1
    ry, rx = te.reduce_axis((0, kh), "ry"), te.reduce_axis((0, kw), "rx")
    rc, rci = te.reduce_axis((0, in_blocks), "rc"), te.reduce_axis((0, 4), "rci")
    acc = te.compute(
        (n, out_h, out_w, blocks, lanes),
        lambda b, y, xx, o, i: te.sum(
            data[b, y * sh + ry * dh, xx * sw + rx * dw, rc * 4 + rci].astype("int32")
            * w[ry, rx, o, rc, i, rci].astype("int32"), axis=[ry, rx, rc, rci]),
        name=DOT_BLOCK)

    epilogue = _epilogue(lambda b, y, xx, o: acc[b, y, xx, o // lanes, o % lanes], bias, scale, zero, lo, hi,
                         out_dtype)
    out = te.compute((n, out_h, out_w, out_channels), epilogue, name=EPILOGUE_BLOCK)
    func = te.create_prim_func([x, w, bias, scale, out])
    attrs = {ATTR_INTRIN: kernel.intrin, ATTR_LANES: lanes, ATTR_REGISTERS: kernel.registers,
             "op_pattern": OP_PATTERN_OPAQUE}
    return func.without_attr("global_symbol").with_attrs(attrs), [n, out_h, out_w, out_channels]


def _epilogue(acc, bias, scale, zero: int, lo: int, hi: int, out_dtype: str):
    """MLAS's requantize on an int32 accumulator: float32(acc + bias) x scale, nearest even, + zero, clamp."""
    from tvm import tirx

    def dequantize(*index):
        return (acc(*index) + bias[index[-1]]).astype("float32") * scale[index[-1]]

    def requantize(*index):
        value = tirx.nearbyint(dequantize(*index)) + tirx.const(float(zero), "float32")
        value = tirx.min(tirx.max(value, tirx.const(float(lo), "float32")), tirx.const(float(hi), "float32"))
        return value.astype("int32").astype(out_dtype)

    return dequantize if out_dtype == "float32" else requantize


def depthwise_prim_func(x_shape: tuple[int, ...], x_dtype: str, kernel_size: tuple[int, int], *,
                        strides: list[int], padding: list[int], dilation: list[int], pad_value: int, zero: int,
                        lo: int, hi: int, out_dtype: str, lanes: int):
    """(TE function (x, weights [KH, KW, C], int32 bias, float32 scale) -> NHWC output, the output's shape).

    Depthwise products fit int16 (255 x 128 < 2**15), so they are formed in 16-bit lanes and only widened to
    accumulate; the epilogue is the dot convolutions' (MLAS's requantize). Scheduled by `schedule_depthwise`."""
    from tvm import te, topi

    n, height, width, channels = x_shape
    kh, kw = kernel_size
    x = te.placeholder(x_shape, x_dtype, name="x")
    w = te.placeholder((kh, kw, channels), "int8", name="w")
    bias = te.placeholder((channels,), "int32", name="bias")
    scale = te.placeholder((channels,), "float32", name="scale")
    top, left, bottom, right = padding
    data = x
    if any(padding):
        data = topi.nn.pad(x, [0, top, left, 0], [0, bottom, right, 0], pad_value=pad_value, name="pad")
    (sh, sw), (dh, dw) = strides, dilation
    out_h = (height + top + bottom - dh * (kh - 1) - 1) // sh + 1
    out_w = (width + left + right - dw * (kw - 1) - 1) // sw + 1
    ry, rx = te.reduce_axis((0, kh), "ry"), te.reduce_axis((0, kw), "rx")
    acc = te.compute(
        (n, out_h, out_w, channels),
        lambda b, y, xx, c: te.sum(
            (data[b, y * sh + ry * dh, xx * sw + rx * dw, c].astype("int16") * w[ry, rx, c].astype("int16"))
            .astype("int32"), axis=[ry, rx]),
        name=DEPTHWISE_BLOCK)
    out = te.compute((n, out_h, out_w, channels), _epilogue(acc, bias, scale, zero, lo, hi, out_dtype),
                     name=EPILOGUE_BLOCK)
    func = te.create_prim_func([x, w, bias, scale, out])
    attrs = {ATTR_DEPTHWISE: 1, ATTR_LANES: lanes, "op_pattern": OP_PATTERN_OPAQUE}
    return func.without_attr("global_symbol").with_attrs(attrs), [n, out_h, out_w, channels]


def schedule_depthwise(sch, lanes: int) -> None:
    """A tile of output pixels x a channel block accumulates over the window (channels in vector lanes, the
    pixels unrolled); the requantize runs on the tile; each output row pads the few input rows it reads."""
    conv = sch.get_sblock(DEPTHWISE_BLOCK)
    epilogue = sch.get_sblock(EPILOGUE_BLOCK)
    n, y, x, c, ry, rx = sch.get_loops(conv)
    width, channels = int(sch.get(x).extent), int(sch.get(c).extent)
    xi_extent = next(d for d in (4, 7, 2, 1) if width % d == 0)
    block = next((d for d in (lanes * 2, lanes, lanes // 2, 4, 2) if d > 1 and channels % d == 0), 1)
    xo, xi = sch.split(x, [None, xi_extent])
    co, ci = sch.split(c, [None, block])
    sch.reorder(n, y, xo, co, ry, rx, xi, ci)
    sch.reverse_compute_at(epilogue, co, preserve_unit_loops=True)
    rows = sch.fuse(n, y)
    sch.parallel(rows)
    init = sch.decompose_reduction(conv, ry)
    sch.unroll(xi)
    init_loops = sch.get_loops(init)
    sch.vectorize(init_loops[-1])
    sch.unroll(init_loops[-2])
    out_loops = sch.get_loops(epilogue)
    sch.unroll(out_loops[-2])
    sch.vectorize(out_loops[-1])
    try:
        pad = sch.get_sblock("pad")
    except Exception:  # no padding (a 1x1 window or a valid convolution)
        return
    sch.compute_at(pad, rows, preserve_unit_loops=True)
    loops = sch.get_loops(pad)
    inner = next((d for d in (lanes * 4, lanes * 2, lanes) if channels % d == 0), 0)
    if inner:
        sch.vectorize(loops[-1] if inner == channels else sch.split(loops[-1], [None, inner])[1])


def _largest_divisor(extent: int, limit: int) -> int:
    return max(d for d in range(1, max(1, limit) + 1) if extent % d == 0)


def schedule(sch, intrin: str, registers: int) -> None:
    """Register-blocked microkernel: a tile of output pixels x output-channel blocks accumulates over the window
    and input-channel groups, each step one instruction per (pixel, block); the requantize runs on the tile;
    rows in parallel. Side stages (int8 conversion, padding) get their own parallel vectorized loops."""
    register_intrinsics()
    conv = sch.get_sblock(DOT_BLOCK)
    epilogue = sch.get_sblock(EPILOGUE_BLOCK)
    n, y, x, ob, oi, ry, rx, rc, rci = sch.get_loops(conv)
    width, blocks = int(sch.get(x).extent), int(sch.get(ob).extent)
    xi_extent = next(d for d in (4, 7, 2, 1) if width % d == 0)
    obi_extent = _largest_divisor(blocks, registers // xi_extent)
    xo, xi = sch.split(x, [None, xi_extent])
    obo, obi = sch.split(ob, [None, obi_extent])
    sch.reorder(n, y, xo, obo, ry, rx, rc, xi, obi, oi, rci)
    sch.reverse_compute_at(epilogue, obo, preserve_unit_loops=True)
    sch.parallel(sch.fuse(n, y))  # before tensorize: parallel needs the reduction block it still is here
    init = sch.decompose_reduction(conv, ry)
    sch.tensorize(oi, intrin)
    sch.unroll(xi)
    sch.unroll(obi)
    init_loops = sch.get_loops(init)
    sch.vectorize(init_loops[-1])
    sch.unroll(init_loops[-2])
    sch.unroll(init_loops[-3])
    out_loops = sch.get_loops(epilogue)
    sch.unroll(out_loops[-2])
    with contextlib.suppress(Exception):  # a partial last block (channels not a multiple of the tile) is left
        sch.vectorize(out_loops[-1])  # to LLVM's loop vectorizer
    for name in ("convert", "pad"):
        try:
            block = sch.get_sblock(name)
        except Exception:  # this function has no such stage
            continue
        loops = sch.get_loops(block)
        sch.parallel(sch.fuse(*loops[:2]))
        inner = sch.get_loops(block)[-1]
        channels = int(sch.get(inner).extent)
        if channels % 16 == 0:
            sch.vectorize(sch.split(inner, [None, 16])[1])


_REGISTERED: set[str] = set()


def register_intrinsics() -> None:
    """Register the five tensor intrinsics once per process (see the module docstring for why here)."""
    if _REGISTERED:
        return
    from tvm.s_tir import TensorIntrin

    for name, (desc, impl) in _intrinsics().items():
        if TensorIntrin.get(name, allow_missing=True) is None:
            TensorIntrin.register(name, desc, impl)
        _REGISTERED.add(name)


def _desc(lanes: int, a_dtype: str):
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def desc(A: T.Buffer((4,), a_dtype, offset_factor=1), B: T.Buffer((lanes, 4), "int8", offset_factor=1),
             C: T.Buffer((lanes,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:4], B[0:lanes, 0:4])
            T.writes(C[0:lanes])
            for i in T.serial(0, lanes):
                for k in T.serial(0, 4):
                    with T.sblock("update"):
                        vi, vk = T.axis.remap("SR", [i, k])
                        C[vi] = C[vi] + T.cast(A[vk], "int32") * T.cast(B[vi, vk], "int32")

    return desc


def _intrinsics() -> dict[str, tuple[Any, Any]]:
    """desc/impl pairs: TVM 0.27's, with operand types as LLVM 22 declares them, plus AVX2 8x4."""
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def vnni(A: T.Buffer((4,), "uint8", offset_factor=1), B: T.Buffer((16, 4), "int8", offset_factor=1),
             C: T.Buffer((16,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(C[0:16], A[0:4], B[0:16, 0:4])
            T.writes(C[0:16])
            a = T.reinterpret(T.broadcast(T.reinterpret(A.vload([0], "uint8x4"), dtype="int32"), 16),
                              dtype="uint8x64")
            C[T.ramp(T.int32(0), 1, 16)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.512"), C.vload([0], dtype="int32x16"), a,
                B.vload([0, 0], dtype="int8x64"), dtype="int32x16")

    @T.prim_func(s_tir=True)
    def avx512(A: T.Buffer((4,), "uint8", offset_factor=1), B: T.Buffer((16, 4), "int8", offset_factor=1),
               C: T.Buffer((16,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(C[0:16], A[0:4], B[0:16, 0:4])
            T.writes(C[0:16])
            a = T.reinterpret(T.broadcast(T.reinterpret(A.vload([0], "uint8x4"), dtype="int32"), 16),
                              dtype="uint8x64")
            pairs = T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id("llvm.x86.avx512.pmaddubs.w.512"), a,
                                            B.vload([0, 0], dtype="int8x64"), dtype="int16x32")
            C[T.ramp(T.int32(0), 1, 16)] += T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.x86.avx512.pmaddw.d.512"), pairs, T.int16x32(1),
                dtype="int32x16")

    @T.prim_func(s_tir=True)
    def avx2(A: T.Buffer((4,), "uint8", offset_factor=1), B: T.Buffer((8, 4), "int8", offset_factor=1),
             C: T.Buffer((8,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(C[0:8], A[0:4], B[0:8, 0:4])
            T.writes(C[0:8])
            a = T.reinterpret(T.broadcast(T.reinterpret(A.vload([0], "uint8x4"), dtype="int32"), 8),
                              dtype="uint8x32")
            pairs = T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.ub.sw"), a,
                                            B.vload([0, 0], dtype="int8x32"), dtype="int16x16")
            C[T.ramp(T.int32(0), 1, 8)] += T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.wd"), pairs, T.int16x16(1), dtype="int32x8")

    @T.prim_func(s_tir=True)
    def neon(A: T.Buffer((4,), "int8", offset_factor=1), B: T.Buffer((4, 4), "int8", offset_factor=1),
             C: T.Buffer((4,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(C[0:4], A[0:4], B[0:4, 0:4])
            T.writes(C[0:4])
            a = T.reinterpret(T.broadcast(T.reinterpret(A.vload([0], "int8x4"), dtype="int32"), 2), dtype="int8x8")
            b = B.vload([0, 0], dtype="int8x16")
            low = T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id("llvm.aarch64.neon.smull.v8i16"), a,
                                          T.vectorlow(b, dtype="int8x8"), dtype="int16x8")
            high = T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id("llvm.aarch64.neon.smull.v8i16"), a,
                                           T.vectorhigh(b, dtype="int8x8"), dtype="int16x8")
            low_sum = T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id("llvm.aarch64.neon.saddlp.v4i32.v8i16"),
                                              low, dtype="int32x4")
            high_sum = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.aarch64.neon.saddlp.v4i32.v8i16"), high, dtype="int32x4")
            C[T.ramp(T.int32(0), 1, 4)] += T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.aarch64.neon.addp.v4i32"), low_sum, high_sum, dtype="int32x4")

    @T.prim_func(s_tir=True)
    def sdot(A: T.Buffer((4,), "int8", offset_factor=1), B: T.Buffer((4, 4), "int8", offset_factor=1),
             C: T.Buffer((4,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(C[0:4], A[0:4], B[0:4, 0:4])
            T.writes(C[0:4])
            a = T.reinterpret(T.broadcast(T.reinterpret(A.vload([0], "int8x4"), dtype="int32"), 4),
                              dtype="int8x16")
            C[T.ramp(T.int32(0), 1, 4)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.aarch64.neon.sdot.v4i32.v16i8"), C.vload([0], dtype="int32x4"), a,
                B.vload([0, 0], dtype="int8x16"), dtype="int32x4")

    impls = {"vnni": vnni, "avx512": avx512, "avx2": avx2, "neon": neon, "sdot": sdot}
    return {KERNELS[k].intrin: (_desc(KERNELS[k].lanes, KERNELS[k].data_dtype), impl) for k, impl in impls.items()}
