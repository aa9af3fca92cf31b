"""Default CPU schedules for TVM: not naive loops, without a device and without tuning.

TVM 0.27's dlight has CPU rules for GEMV and reductions only; a legalized convolution stays a 7-deep scalar loop nest
(20-30x slower than onnxruntime). The rule here schedules the NHWC convolutions the integer lowering (and the float NHWC
conversion) emit: output channels split into vector lanes (contiguous in the HWIO weights and the NHWC output), a few
output pixels unrolled, the accumulator tile kept in a local buffer (registers), the reduction (kernel window x input
channels) outside the tile, the epilogue (bias, requantize, clamp, residual add) fused into the tile's write-back, rows
in parallel. A matrix product whose weight is [K, N] (the classifier's Gemm, its weight transposed at import) streams
the weight rows into a tile of output columns; dlight's CPU GEMV leaves that "outer reduction" form to its generic
reduction rule, scalar loops that read the weight a column at a time (1.4 ms of V2@224's 7.5 ms tuned library, for 0.4%
of its MACs). Elementwise kernels get fused, parallel, vectorized loops. Anything a tuning database covers keeps its
database schedule (edgemb/backends/tvm_tuning.py puts each tuned task's default schedule there too, measured, so the
faster of the two is compiled).
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


def default_rules() -> list[Any]:
    """edgemb's convolution, matrix-product and elementwise rules, then dlight's CPU GEMV and reduction, in order."""
    from tvm.s_tir import dlight as dl

    return [_dot_rule(), _conv_rule(), _matmul_rule(), _elementwise_rule(), dl.cpu.GEMV(), dl.cpu.Reduction()]


def default_schedule_pass(target: Any):
    """The dlight pass over default_rules(): the first rule that schedules a function wins."""
    from tvm.s_tir import dlight as dl

    return dl.ApplyDefaultSchedule(*default_rules())


def default_schedule(func: Any, target: Any) -> Any:
    """The schedule default_schedule_pass gives `func` (a traced tvm.s_tir.Schedule), or None when no rule applies
    (the function stays naive loops): what a tuned record has to beat."""
    for rule in default_rules():
        space = rule.apply(func, target, False)
        if space is not None:
            return space[0] if isinstance(space, list) else space
    return None


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


def _try_schedule(rule, func, target):
    """`rule._schedule(sch, lanes)` on a fresh schedule of func, or None when func is not that rule's shape (an
    exception included), so the next rule (or naive loops) applies."""
    from tvm.s_tir import Schedule

    if not rule.is_target_available(target):
        return None
    sch = Schedule(func)
    try:
        return rule._schedule(sch, vector_lanes(target))
    except Exception:
        return None


def _blocks_and_only_reduction(sch):
    """The function's blocks and its one reduction block (None when it has none or several)."""
    blocks = _blocks(sch)
    reductions = [b for b in blocks if _is_reduction(sch, b)]
    return blocks, reductions[0] if len(reductions) == 1 else None


def _conv_rule():
    from tvm.s_tir.dlight.cpu.base import CPUScheduleRule

    class NhwcConv(CPUScheduleRule):
        """Register-blocked NHWC convolution (regular, pointwise, depthwise) with its fused epilogue."""

        def apply(self, func, target, _tunable):
            return _try_schedule(self, func, target)

        def _schedule(self, sch, lanes: int):
            blocks, conv = _blocks_and_only_reduction(sch)
            if conv is None:
                return None
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


def _matmul_rule():
    from tvm.s_tir.dlight.cpu.base import CPUScheduleRule

    class OuterReductionMatmul(CPUScheduleRule):
        """C[..., j] = sum_k A[..., k] * B[k, j] (+ an elementwise epilogue), j contiguous in B and C: each weight
        row is read once, contiguously, into an accumulator tile of output columns (in a local buffer) whose
        loop LLVM vectorizes; tiles in parallel, the epilogue fused into the tile's write-back."""

        def apply(self, func, target, _tunable):
            return _try_schedule(self, func, target)

        def _schedule(self, sch, lanes: int):
            blocks, block = _blocks_and_only_reduction(sch)
            if block is None or not _outer_reduction(sch.get(block)):
                return None
            last = blocks[-1]
            if sch.get(last).name_hint == sch.get(block).name_hint:
                last = None
            _inline_spatial(sch, [block] + ([last] if last is not None else []))
            write_back = sch.cache_write(block, 0, "local")
            if last is not None:
                sch.compute_inline(write_back)
            epilogue = last if last is not None else write_back
            *rows, j, k = sch.get_loops(block)
            columns = int(sch.get(j).extent)
            tile = _column_tile(columns, lanes)
            jo, ji = sch.split(j, [None, tile])
            sch.reorder(*rows, jo, k, ji)
            outer = sch.fuse(*rows, jo) if rows else jo
            sch.parallel(outer)
            sch.reverse_compute_at(epilogue, outer, preserve_unit_loops=True)
            init = sch.decompose_reduction(block, k)
            sch.vectorize(sch.get_loops(init)[-1])
            sch.vectorize(sch.get_loops(epilogue)[-1])
            return sch

    return OuterReductionMatmul()


def _outer_reduction(stmt) -> bool:
    """The block is out[..., j] += a[..., k] * b[k, j]: spatial axes then one reduction axis (the last), the output
    indexed by the spatial axes in order, one input whose last two indices are (k, j)."""
    kinds = [int(iv.iter_type) for iv in stmt.iter_vars]
    if len(kinds) < 2 or kinds[-1] != REDUCE or REDUCE in kinds[:-1] or len(stmt.writes) != 1:
        return False
    spatial, k = [iv.var for iv in stmt.iter_vars[:-1]], stmt.iter_vars[-1].var
    out = [r.min for r in stmt.writes[0].region]
    if len(out) != len(spatial) or not all(o.same_as(v) for o, v in zip(out, spatial, strict=True)):
        return False
    j = spatial[-1]
    weights = [[r.min for r in read.region] for read in stmt.reads if len(read.region) >= 2]
    return any(idx[-2].same_as(k) and idx[-1].same_as(j) for idx in weights)


def _column_tile(columns: int, lanes: int, limit: int = 256) -> int:
    """Output columns per tile: the largest divisor of `columns` up to `limit` (1 KiB of fp32 accumulators),
    a multiple of half a vector when one exists (1000 classes: 200)."""
    divisors = [d for d in range(1, min(columns, limit) + 1) if columns % d == 0]
    return max(divisors, key=lambda d: (d % max(1, lanes // 2) == 0, d))


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
