"""Default CPU schedules for TVM: not naive loops, without a device and without tuning.

TVM 0.27's dlight has CPU rules for GEMV and reductions only; a legalized convolution stays a 7-deep scalar
loop nest (20-30x slower than onnxruntime). The rule here schedules the NHWC convolutions the integer
lowering (and the float NHWC conversion) emit: output channels split into vector lanes (contiguous in the
HWIO weights and the NHWC output), a few output pixels unrolled, the accumulator tile kept in a local
buffer (registers), the reduction (kernel window x input channels) outside the tile, the epilogue
(bias, requantize, clamp, residual add) fused into the tile's write-back, rows in parallel. Elementwise
kernels get fused, parallel, vectorized loops. Anything a tuning database covers keeps its tuned schedule.
The int8 lowering's dot-product and depthwise functions are scheduled first, by edgemb/backends/tvm_dot.py.
"""

from __future__ import annotations

from typing import Any

REDUCE = 2  # IterVar.iter_type of a reduction axis
PIXELS_PER_TILE = 4


def vector_lanes(target: Any, bits: int = 32) -> int:
    """32-bit lanes per vector register on the target (AVX-512: 16, AVX2: 8, NEON: 4)."""
    from tvm.target.codegen import llvm_get_vector_width

    features = {f.lstrip("+") for f in target.attrs.get("mattr", [])}
    width = llvm_get_vector_width(target)
    if str(target.attrs.get("mtriple", "")).startswith("aarch64") or "neon" in features:
        width = 128
    return max(2, (width if width > 0 else 128) // bits)


def default_schedule_pass(target: Any):
    """The dlight pass: edgemb's convolution and elementwise rules, then dlight's CPU GEMV and reduction."""
    from tvm.s_tir import dlight as dl

    return dl.ApplyDefaultSchedule(_dot_rule(), _conv_rule(), _elementwise_rule(), dl.cpu.GEMV(),
                                   dl.cpu.Reduction())


def _dot_rule():
    from tvm.s_tir import Schedule
    from tvm.s_tir.dlight.cpu.base import CPUScheduleRule

    from edgemb.backends import tvm_dot

    class DotConv(CPUScheduleRule):
        """The lowering's dot-product convolutions (tensorized with the intrinsic their function names) and its
        depthwise convolutions."""

        def apply(self, func, target, _tunable):
            if not self.is_target_available(target) or func.attrs is None:
                return None
            if tvm_dot.ATTR_INTRIN in func.attrs:
                sch = Schedule(func)
                tvm_dot.schedule(sch, str(func.attrs[tvm_dot.ATTR_INTRIN]), int(func.attrs[tvm_dot.ATTR_REGISTERS]))
                return sch
            if tvm_dot.ATTR_DEPTHWISE in func.attrs:
                sch = Schedule(func)
                tvm_dot.schedule_depthwise(sch, vector_lanes(target))
                return sch
            return None

    return DotConv()


def _largest_divisor(extent: int, candidates: list[int]) -> int:
    return next((c for c in candidates if c <= extent and extent % c == 0), 1)


def _blocks(sch):
    return list(sch.get_child_blocks(sch.get_sblock("root")))


def _is_reduction(sch, block) -> bool:
    return any(int(iv.iter_type) == REDUCE for iv in sch.get(block).iter_vars)


def _has_condition(sch, block) -> bool:
    """A padding block (its store is an if_then_else): inlining it would put a branch in the conv's loop."""
    value = getattr(sch.get(block).body, "value", None)
    return "if_then_else" in str(getattr(getattr(value, "op", None), "name", ""))


def _inline_spatial(sch, keep: list) -> None:
    """Inline every elementwise block except `keep` and padding blocks (each tried; failures keep the block)."""
    kept = {sch.get(b).name_hint for b in keep}
    for block in _blocks(sch):
        name = sch.get(block).name_hint
        if name in kept or _is_reduction(sch, block) or _has_condition(sch, block):
            continue
        try:
            sch.compute_inline(block)
        except Exception:  # a block that cannot be inlined simply stays a loop nest
            continue


def _vectorize_elementwise(sch, block, lanes: int) -> None:
    """Outer loops fused and parallel, the innermost (contiguous) loop vectorized: index arithmetic stays scalar,
    once per vector. Short innermost loops (an RGB channel axis) are fused with the rest and split instead."""
    loops = sch.get_loops(block)
    extent = int(sch.get(loops[-1]).extent)
    candidates = [lanes * 4, lanes * 2, lanes, lanes // 2]
    if len(loops) > 1 and extent >= 8 and _largest_divisor(extent, candidates) > 1:
        sch.parallel(sch.fuse(*loops[:-1]) if len(loops) > 2 else loops[0])
        inner = _largest_divisor(extent, candidates)
        sch.vectorize(loops[-1] if inner == extent else sch.split(loops[-1], [None, inner])[1])
        return
    if len(loops) > 2 and extent < 8:  # NHWC with 3 channels: rows in parallel, channels outside the pixels
        sch.parallel(sch.fuse(*loops[:-2]) if len(loops) > 3 else loops[0])
        sch.reorder(loops[-1], loops[-2])
        sch.unroll(loops[-1])
        return
    fused = sch.fuse(*loops) if len(loops) > 1 else loops[0]
    extent = int(sch.get(fused).extent)
    inner = _largest_divisor(extent, [lanes * 4, lanes * 2, lanes, lanes // 2, 4, 2])
    if inner > 1:
        outer, vec = sch.split(fused, [None, inner])
        sch.parallel(outer)
        sch.vectorize(vec)
    else:
        sch.parallel(fused)


def _pad_per_row(sch, block, rows, lanes: int) -> None:
    """Pad inside the row loop (the few input rows one output row reads, while they are in cache) instead of
    a whole padded copy of the input per layer; a padding block that cannot move gets its own loop nest."""
    try:
        sch.compute_at(block, rows, preserve_unit_loops=True)
        loops = sch.get_loops(block)[1:]
        channels = int(sch.get(loops[-1]).extent)
        inner = _largest_divisor(channels, [lanes * 4, lanes * 2, lanes, lanes // 2])
        if inner > 1:
            sch.vectorize(loops[-1] if inner == channels else sch.split(loops[-1], [None, inner])[1])
    except Exception:  # pad as a separate parallel, vectorized loop nest
        _vectorize_elementwise(sch, block, lanes)


def _conv_rule():
    from tvm.s_tir import Schedule
    from tvm.s_tir.dlight.cpu.base import CPUScheduleRule

    class NhwcConv(CPUScheduleRule):
        """Register-blocked NHWC convolution (regular, pointwise, depthwise) with its fused epilogue."""

        def apply(self, func, target, _tunable):
            if not self.is_target_available(target):
                return None
            sch = Schedule(func)
            try:
                return self._schedule(sch, vector_lanes(target))
            except Exception:  # not this rule's shape: the next rule (or naive loops) applies
                return None

        def _schedule(self, sch, lanes: int):
            blocks = _blocks(sch)
            convs = [b for b in blocks if _is_reduction(sch, b)]
            if len(convs) != 1:
                return None
            conv = convs[0]
            stmt = sch.get(conv)
            kinds = "".join("R" if int(iv.iter_type) == REDUCE else "S" for iv in stmt.iter_vars)
            if kinds != "SSSSRRR" or "conv2d_nhwc" not in stmt.name_hint:
                return None
            last = blocks[-1]
            if sch.get(last).name_hint == stmt.name_hint:
                last = None
            _inline_spatial(sch, [conv] + ([last] if last is not None else []))
            write_back = sch.cache_write(conv, 0, "local")  # conv now accumulates in a local (register) tile
            if last is not None:
                sch.compute_inline(write_back)
            epilogue = last if last is not None else write_back
            n, y, x, f, ry, rx, rc = sch.get_loops(conv)
            width, channels = int(sch.get(x).extent), int(sch.get(f).extent)
            fi = _largest_divisor(channels, [lanes * 2, lanes, lanes // 2, 4, 2])
            xi = _largest_divisor(width, [PIXELS_PER_TILE, 2])
            xo, x_in = sch.split(x, [None, xi])
            fo, f_in = sch.split(f, [None, fi])
            sch.reorder(n, y, xo, fo, ry, rx, rc, x_in, f_in)
            rows = sch.fuse(n, y)
            sch.parallel(rows)
            sch.reverse_compute_at(epilogue, fo, preserve_unit_loops=True)
            init = sch.decompose_reduction(conv, ry)
            # The accumulator update is a reduction block, which TIR will not vectorize directly: its channel loop
            # stays innermost with a constant extent for LLVM's loop vectorizer; the pixel loop is unrolled.
            sch.unroll(sch.get_loops(conv)[-2])
            init_loops = sch.get_loops(init)
            sch.unroll(init_loops[-2])
            sch.vectorize(init_loops[-1])
            out_loops = sch.get_loops(epilogue)
            sch.unroll(out_loops[-2])  # rows xo fo | n' y' x' f': the tile's pixels and channels
            sch.vectorize(out_loops[-1])
            for block in _blocks(sch):
                if _has_condition(sch, block):  # padding: the rows one output row reads, padded in cache
                    _pad_per_row(sch, block, rows, lanes)
            return sch

    return NhwcConv()


def _elementwise_rule():
    from tvm.s_tir import Schedule
    from tvm.s_tir.dlight.cpu.base import CPUScheduleRule

    class Elementwise(CPUScheduleRule):
        """Quantize, transposes, pads, fused dequantize -> op -> quantize: one parallel vectorized loop."""

        def apply(self, func, target, _tunable):
            if not self.is_target_available(target):
                return None
            sch = Schedule(func)
            try:
                blocks = _blocks(sch)
                if not blocks or any(_is_reduction(sch, b) for b in blocks):
                    return None
                _inline_spatial(sch, [blocks[-1]])
                for block in _blocks(sch):
                    _vectorize_elementwise(sch, block, vector_lanes(target))
                return sch
            except Exception:  # leave it to the next rule
                return None

    return Elementwise()
