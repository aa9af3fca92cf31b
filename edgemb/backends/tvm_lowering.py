"""Integer lowering of edgemb's QDQ graph in Relax: real int8 x int8 -> int32 convolutions for TVM 0.27.

TVM 0.27 imports a QDQ ONNX model as fake-quant: every convolution runs in float between a dequantize and a
quantize. This rewrite finds, in the imported Relax function,

    quantize(clamp?(add?(conv2d(dequantize(x_q), dequantize(W_q)), reshape(dequantize(b_q)))))

and replaces it with an integer convolution of the 8-bit activations and weights (int32 accumulation), a
per-channel int32 bias that also absorbs the activation zero point (sum(W) * zp_x, so padding pads with the
zero point as QDQ semantics require), and a fixed-point requantize (int64 multiply by a Q31 multiplier, a
rounding right shift, the output zero point, the clamp folded into the integer bounds). Uint8 (VNNI's u8 x s8)
and int8 activations are both handled. What is left between quantized tensors (the residual add, hard-swish,
the SE multiply, pooling) stays dequantize -> op -> quantize, which Relax fuses into one elementwise kernel
that reads and writes 8-bit tensors.

With the target's dot-product kernel (`lower_qdq(mod, dot)`, chosen from its ISA in edgemb/backends/tvm_dot.py),
pointwise and full convolutions (the RGB stem given a zero-weight 4th channel) and the classifier's matmul
become TE functions tensorized with vpdpbusd / vpmaddubsw / smull+saddlp / sdot, and depthwise convolutions
get a TE function of their own; their requantize is MLAS's (float32 scale, nearest even), as onnxruntime's.

16-bit activations (the quantize stage's accuracy rescue: uint16/int16 Q/DQ pairs) have no integer kernel here. A
convolution (or the classifier's matmul) reading one, and an add reading or writing one, runs in float between its
dequantize and quantize, as onnxruntime runs them, but in NHWC with its weights dequantized at build time, so the
default NHWC schedules take it and the integer ops around it stay NHWC (LoweringReport.float_ops counts them). A
convolution with an 8-bit input and a 16-bit output stays on the integer kernels: their epilogue narrows to any
integer type. Left to TVM's fake-quant form these were NCHW convolutions no edgemb schedule matches, scalar loops
at ~1 GMAC/s (V2@224 int8: 19 ms instead of ~1.1 ms).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np

from edgemb.backends import tvm_dot

ACC_DTYPE = "int32"
TO_NHWC, TO_NCHW = [0, 2, 3, 1], [0, 3, 1, 2]
EIGHT_BIT, SIXTEEN_BIT = ("uint8", "int8"), ("uint16", "int16")
CLAMP_TIR_PREFIXES = {"maximum": "lo", "minimum": "hi"}
# The Relax operators the patterns match, by the names the rewrite uses for them.
RELAX_OPS = {"quantize": "quantize", "dequantize": "dequantize", "conv2d": "nn.conv2d", "add": "add",
             "reshape": "reshape", "call_tir": "call_tir", "relu": "nn.relu", "clip": "clip", "where": "where",
             "isnan": "isnan", "matmul": "matmul", "permute_dims": "permute_dims"}


@dataclass
class LoweringReport:
    """What the rewrite did: integer convolutions by kind, and the quantized ops it runs in float instead."""

    integer_ops: dict[str, int] = field(default_factory=dict)
    dot_ops: dict[str, int] = field(default_factory=dict)  # of those, on the target's dot-product instruction
    # convolutions, matmuls and adds kept in float (NHWC) because they read or write a 16-bit activation
    float_ops: dict[str, int] = field(default_factory=dict)
    dot_kernel: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        """The compile.json form."""
        return {"integer_ops": dict(sorted(self.integer_ops.items())), "dot_ops": dict(sorted(self.dot_ops.items())),
                "float_ops": dict(sorted(self.float_ops.items())), "dot_kernel": self.dot_kernel}

    def float_note(self) -> str:
        """One line naming the ops kept in float ("" when there are none)."""
        if not self.float_ops:
            return ""
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(self.float_ops.items()))
        return f"{sum(self.float_ops.values())} quantized ops run in float NHWC (16-bit activations): {kinds}"


def fixed_point(multiplier: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel real multipliers as (Q31-style mantissa, right shift): m / 2**shift ~= multiplier."""
    multiplier = np.asarray(multiplier, np.float64)
    if np.any(multiplier <= 0) or np.any(multiplier >= 2.0**30):
        raise ValueError("requantize multipliers must lie in (0, 2**30)")
    exponent = np.floor(np.log2(multiplier)).astype(np.int64)
    shift = 30 - exponent
    mantissa = np.round(multiplier * np.exp2(shift.astype(np.float64))).astype(np.int64)
    return mantissa, shift


def requantize_reference(acc: np.ndarray, mantissa: np.ndarray, shift: np.ndarray, zero: int, lo: int,
                         hi: int) -> np.ndarray:
    """The requantize formula in NumPy (NCHW, per-channel): what the Relax ops compute, for tests and docs."""
    m = mantissa.reshape(1, -1, 1, 1)
    s = shift.reshape(1, -1, 1, 1)
    scaled = (acc.astype(np.int64) * m + (np.int64(1) << (s - 1))) >> s
    return np.clip(scaled + zero, lo, hi)


def lower_qdq(mod, dot: tvm_dot.DotKernel | None = None):
    """Rewrite every quantized convolution of `mod["main"]` into integer kernels; returns (module, report).

    With `dot` (the target's dot-product kernel), pointwise and full convolutions use it."""
    report = LoweringReport(dot_kernel=None if dot is None else dot.to_dict())
    return _rewrite_main(mod, QdqRewrite(report, dot=dot)), report


def float_nhwc(mod):
    """The float graph with NHWC convolutions (HWIO weights), the layout the default schedules vectorize.

    ONNX Clip imports as TIR calls that layout conversion cannot see through; they become Relax
    maximum/minimum with constant bounds first, so ConvertLayout keeps whole blocks in NHWC."""
    from tvm import relax

    mod = _rewrite_main(mod, QdqRewrite(LoweringReport(), float_clamps=True))
    return relax.transform.ConvertLayout({"relax.nn.conv2d": ["NHWC", "HWIO"]})(mod)


def _rewrite_main(mod, rewrite: QdqRewrite):
    """`mod` with main's bindings passed through `rewrite` (and the bindings nothing uses any more removed)."""
    from tvm import relax

    mutator = _mutator_class()(mod, rewrite)
    main = mutator.visit_expr(mod["main"])
    mod = mutator.builder_.get()
    mod["main"] = relax.analysis.remove_all_unused(main)
    return mod


def _mutator_class():
    """The Relax mutator that offers each binding of main to a QdqRewrite (built lazily so importing edgemb never
    imports TVM)."""
    from tvm import relax

    @relax.expr_functor.mutator
    class Rewriter(relax.PyExprMutator):
        """Visits main's bindings in order; a binding the rewrite does not replace is visited as usual."""

        def __init__(self, mod, rewrite: QdqRewrite) -> None:
            super().__init__(mod)
            self.rewrite = rewrite
            rewrite.mutator = self

        def visit_var_binding_(self, binding) -> None:
            if not self.rewrite.rewrite_binding(binding):
                super().visit_var_binding_(binding)

    return Rewriter


def _relax_ops() -> SimpleNamespace:
    """The Relax operators and IR node types the patterns match (looked up when a rewrite starts, not at import)."""
    from tvm.ir import Op
    from tvm.ir.expr import Constant
    from tvm.ir.prim.expr import FloatImm, IntImm

    ops = {name: Op.get(f"relax.{op}") for name, op in RELAX_OPS.items()}
    return SimpleNamespace(**ops, Constant=Constant, FloatImm=FloatImm, IntImm=IntImm)


class QdqRewrite:
    """The patterns and their integer replacements. Remembers each binding's value so patterns can look through
    variables; emits through the mutator that drives it (set by that mutator, see _mutator_class)."""

    def __init__(self, report: LoweringReport, float_clamps: bool = False,
                 dot: tvm_dot.DotKernel | None = None) -> None:
        self.dot = dot
        self.float_clamps = float_clamps
        self.defs: dict[Any, Any] = {}
        self.nhwc: dict[Any, Any] = {}  # quantized NCHW var of the graph -> its NHWC twin made here
        self.report = report
        self.ops = _relax_ops()
        self.mutator: Any = None

    def rewrite_binding(self, binding) -> bool:
        """Replace one binding of main when it matches a pattern; False leaves it to the mutator's default visit."""
        from tvm import relax

        self.defs[binding.var] = binding.value
        value = binding.value
        if self.float_clamps and (clamp := self._clamp(value)) is not None and self._is_tir_clamp(value):
            inner, lo, hi = clamp
            bound = relax.const(lo if hi is None else hi, str(binding.var.ty.dtype))
            op = relax.op.maximum if hi is None else relax.op.minimum
            self.mutator.set_var_remap(binding.var, self._emit(op(self.mutator.visit_expr(inner), bound)))
            return True
        if isinstance(value, relax.Call) and value.op.same_as(self.ops.matmul):
            lowered = self._lower_matmul(value)
            if lowered is not None:
                self.mutator.set_var_remap(binding.var, lowered)
                return True
        if isinstance(value, relax.Call) and value.op.same_as(self.ops.quantize):
            lowered = self._lower(value)
            if lowered is None:
                lowered = self._lower_add(value)
            if lowered is not None:
                self.nhwc[binding.var] = lowered
                self.mutator.set_var_remap(binding.var, self._emit(relax.op.permute_dims(lowered, TO_NCHW)))
                return True
        return False

    def _emit(self, expr):
        return self.mutator.builder_.emit(expr)

    def _count(self, kind: str, dot: bool = False, in_float: bool = False) -> None:
        if in_float:
            self.report.float_ops[kind] = self.report.float_ops.get(kind, 0) + 1
            return
        if dot:
            self.report.dot_ops[kind] = self.report.dot_ops.get(kind, 0) + 1
        self.report.integer_ops[kind] = self.report.integer_ops.get(kind, 0) + 1

    # --- looking through bindings -------------------------------------------------------------
    def _value(self, expr):
        from tvm import relax

        while isinstance(expr, relax.Var) and expr in self.defs:
            expr = self.defs[expr]
        return expr

    def _call(self, expr, op):
        from tvm import relax

        value = self._value(expr)
        return value if isinstance(value, relax.Call) and value.op.same_as(op) else None

    def _const(self, expr) -> np.ndarray | None:
        """Evaluate a compile-time constant expression (constants, their dequantize/reshape, ONNX clip bounds)."""
        from tvm import relax

        ops, value = self.ops, self._value(expr)
        if isinstance(value, ops.Constant):
            data = value.value
            return data.numpy() if hasattr(data, "numpy") else np.array(data)
        if isinstance(value, (ops.IntImm, ops.FloatImm)):
            return np.array(value.value)
        if not isinstance(value, relax.Call):
            return None
        if value.op.same_as(ops.reshape):
            data = self._const(value.args[0])
            return None if data is None else data.reshape([int(d) for d in value.args[1].values])
        if value.op.same_as(ops.dequantize):
            q, scale, zero = (self._const(a) for a in value.args)
            if q is None or scale is None or zero is None:
                return None
            shape = [1] * q.ndim
            if scale.ndim and q.ndim:
                shape[int(value.attrs.axis)] = -1
            return (q.astype(np.float64) - zero.reshape(shape)) * scale.reshape(shape)
        if value.op.same_as(ops.where) and self._call(value.args[0], ops.isnan) is not None:
            bound = self._const(value.args[2])
            return None if bound is None or np.isnan(bound).any() else bound
        return None

    def _clamp(self, expr):
        """(inner, lo, hi) when `expr` is a clamp with constant bounds (ONNX Clip/Relu as imported)."""
        from tvm import relax

        value = self._value(expr)
        if not isinstance(value, relax.Call):
            return None
        if value.op.same_as(self.ops.relu):
            return value.args[0], 0.0, None
        if value.op.same_as(self.ops.clip):
            lo, hi = self._const(value.args[1]), self._const(value.args[2])
            if lo is None or hi is None:
                return None
            return value.args[0], float(lo), float(hi)
        if value.op.same_as(self.ops.call_tir):
            name = value.args[0].name_hint
            side = next((s for p, s in CLAMP_TIR_PREFIXES.items() if name.startswith(p)), None)
            operands = value.args[1].fields
            bound = self._const(operands[1]) if side and len(operands) == 2 else None
            if bound is None or bound.size != 1:
                return None
            b = float(bound.reshape(()))
            return (operands[0], b, None) if side == "lo" else (operands[0], None, b)
        return None

    def _is_tir_clamp(self, value) -> bool:
        from tvm import relax

        return isinstance(value, relax.Call) and value.op.same_as(self.ops.call_tir)

    # --- the rewrite ----------------------------------------------------------------------------
    def _lower(self, q_call):
        """Integer conv for quantize(clamp*(conv + bias)) (a float NHWC conv when its input is 16-bit); None when
        the producer is not that pattern."""
        ops = self.ops
        out_dtype = str(q_call.attrs.out_dtype)
        scale_y, zero_y = self._const(q_call.args[1]), self._const(q_call.args[2])
        if out_dtype not in EIGHT_BIT + SIXTEEN_BIT or scale_y is None or zero_y is None \
                or scale_y.size != 1 or zero_y.size != 1:
            return None
        expr, lo, hi = q_call.args[0], -np.inf, np.inf
        while (clamp := self._clamp(expr)) is not None:
            expr = clamp[0]
            lo = lo if clamp[1] is None else max(lo, clamp[1])
            hi = hi if clamp[2] is None else min(hi, clamp[2])
        bias = None
        if (add_call := self._call(expr, ops.add)) is not None:
            conv, bias = add_call.args[0], self._const(add_call.args[1])
            if bias is None:
                conv, bias = add_call.args[1], self._const(add_call.args[0])
            if bias is None:
                return None
            expr = conv
        conv_call = self._call(expr, ops.conv2d)
        if conv_call is None:
            return None
        attrs = conv_call.attrs
        if str(attrs.data_layout) != "NCHW" or str(attrs.kernel_layout) != "OIHW":
            return None
        x_dq, w_dq = self._call(conv_call.args[0], ops.dequantize), self._call(conv_call.args[1], ops.dequantize)
        if x_dq is None or w_dq is None:
            return None
        scale_x, zero_x = self._const(x_dq.args[1]), self._const(x_dq.args[2])
        w_q, scale_w, zero_w = (self._const(a) for a in w_dq.args)
        if any(v is None for v in (scale_x, zero_x, w_q, scale_w, zero_w)) or scale_x.size != 1 \
                or w_q.dtype != np.int8 or np.any(zero_w != 0):
            return None
        x_dtype = str(self.mutator.visit_expr(x_dq.args[0]).ty.dtype)
        if x_dtype not in EIGHT_BIT + SIXTEEN_BIT or len(w_q.shape) != 4:
            return None
        x_q = self._nhwc_input(x_dq.args[0])
        if x_dtype in SIXTEEN_BIT:  # no integer kernel reads 16 bits (the depthwise one forms int16 products)
            return self._emit_float_conv(x_q, float(scale_x.reshape(())), int(zero_x.reshape(())), w_q,
                                         np.broadcast_to(scale_w.reshape(-1), (w_q.shape[0],)), bias, attrs,
                                         float(scale_y.reshape(())), int(zero_y.reshape(())), out_dtype, lo, hi)
        return self._emit_integer_conv(x_q, int(zero_x.reshape(())), float(scale_x.reshape(())), w_q,
                                       np.broadcast_to(scale_w.reshape(-1), (w_q.shape[0],)), bias, attrs,
                                       float(scale_y.reshape(())), int(zero_y.reshape(())), out_dtype, lo, hi)

    def _emit_integer_conv(self, x_q, zero_x, scale_x, w_q, scale_w, bias, attrs, scale_y, zero_y,
                           out_dtype, lo, hi):
        """The convolution and its requantize on the target's dot product, the depthwise TE function, or else a
        Relax int32 conv2d with an elementwise fixed-point requantize."""
        channels = w_q.shape[0]
        float_bias = np.zeros(channels) if bias is None else np.asarray(bias, np.float64).reshape(-1)
        if float_bias.size != channels:
            return None
        groups = int(attrs.groups)
        padding = [int(p) for p in attrs.padding]
        strides = [int(s) for s in attrs.strides]
        dilation = [int(d) for d in attrs.dilation]
        kind = _conv_kind(w_q.shape, groups, strides)
        mantissa, shift = fixed_point(scale_x * scale_w / scale_y)
        q_lo, q_hi = _integer_bounds(lo, hi, scale_y, zero_y, out_dtype)
        bias_q = np.round(float_bias / (scale_x * scale_w))
        w_sums = w_q.reshape(channels, -1).astype(np.int64).sum(axis=1)
        x_dtype = str(x_q.ty.dtype)
        dot = self.dot
        if dot is not None and groups == 1 and w_q.shape[1] % 4:
            x_q, w_q = self._pad_stem(x_q, w_q, zero_x)
        if dot is not None and tvm_dot.eligible(w_q, groups) and tvm_dot.weights_fit(dot, w_q):
            # The instruction's activation bytes: x -/+ 128 when its signedness differs (the zero point too).
            zero_eff = zero_x + tvm_dot.byte_offset(x_dtype, dot)
            scale = np.float32(scale_x) * np.float32(scale_w) / np.float32(scale_y)  # MLAS's float32 scale
            out = self._emit_dot_conv(x_q, w_q, bias_q - zero_eff * w_sums, scale, zero_y, q_lo, q_hi,
                                      out_dtype, strides, padding, dilation, zero_eff)
            self._count(kind, dot=True)
            return out
        if dot is not None and kind.startswith("depthwise"):
            scale = np.float32(scale_x) * np.float32(scale_w) / np.float32(scale_y)
            out = self._emit_depthwise(x_q, w_q, bias_q - zero_x * w_sums, scale, zero_y, q_lo, q_hi, out_dtype,
                                       strides, padding, dilation, zero_x)
            self._count(kind)
            return out
        acc = self._emit_int32_conv(x_q, w_q, zero_x, groups, strides, padding, dilation)
        out = self._emit_requantize(acc, bias_q - zero_x * w_sums, mantissa, shift, zero_y, q_lo, q_hi, out_dtype)
        self._count(kind)
        return out

    def _emit_float_conv(self, x_q, scale_x, zero_x, w_q, scale_w, bias, attrs, scale_y, zero_y, out_dtype,
                         lo, hi):
        """dequantize -> NHWC conv2d (HWIO weights dequantized here in float32, as the graph's dequantize computes
        them) + bias -> clamp -> quantize: the fake-quant graph's arithmetic, in the layout NhwcConv schedules."""
        from tvm import relax

        channels = w_q.shape[0]
        float_bias = None if bias is None else np.asarray(bias, np.float32).reshape(-1)
        if float_bias is not None and float_bias.size != channels:
            return None
        emit, f32 = self._emit, "float32"
        w_float = w_q.astype(np.float32) * np.asarray(scale_w, np.float32).reshape(-1, 1, 1, 1)
        x = emit(relax.op.dequantize(x_q, relax.const(scale_x, f32), relax.const(zero_x, str(x_q.ty.dtype)),
                                     axis=-1, out_dtype=f32))
        strides = [int(s) for s in attrs.strides]
        y = emit(relax.op.nn.conv2d(
            x, relax.const(np.ascontiguousarray(w_float.transpose(2, 3, 1, 0)), f32), strides=strides,
            padding=[int(p) for p in attrs.padding], dilation=[int(d) for d in attrs.dilation],
            groups=int(attrs.groups), data_layout="NHWC", kernel_layout="HWIO", out_dtype=f32))
        if float_bias is not None:
            y = emit(relax.op.add(y, relax.const(float_bias.reshape(1, 1, 1, -1), f32)))
        if lo > -np.inf:
            y = emit(relax.op.maximum(y, relax.const(lo, f32)))
        if hi < np.inf:
            y = emit(relax.op.minimum(y, relax.const(hi, f32)))
        self._count(_conv_kind(w_q.shape, int(attrs.groups), strides), in_float=True)
        return emit(relax.op.quantize(y, relax.const(scale_y, f32), relax.const(zero_y, out_dtype), axis=-1,
                                      out_dtype=out_dtype))

    def _pad_stem(self, x_q, w_q, zero_x):
        """The RGB stem: a zero-weight 4th channel (holding the zero point) makes it dot-product shaped, when the
        padded weights fit the kernel; returns (input, weights), unchanged otherwise."""
        from tvm import relax

        channels, extra = w_q.shape[0], -w_q.shape[1] % 4
        padded = np.concatenate([w_q, np.zeros((channels, extra, *w_q.shape[2:]), np.int8)], axis=1)
        if not tvm_dot.weights_fit(self.dot, padded):
            return x_q, w_q
        return self._emit(relax.op.nn.pad(x_q, [0, 0, 0, 0, 0, 0, 0, extra], pad_value=float(zero_x))), padded

    def _emit_int32_conv(self, x_q, w_q, zero_x, groups, strides, padding, dilation):
        """A Relax NHWC conv2d accumulating in int32 (HWIO weights)."""
        from tvm import relax

        if zero_x != 0 and any(padding):
            # QDQ pads the dequantized input with 0.0, i.e. the quantized input with its zero point.
            top, left, bottom, right = padding
            x_q = self._emit(relax.op.nn.pad(x_q, [0, 0, top, bottom, left, right, 0, 0], pad_value=float(zero_x)))
            padding = [0, 0, 0, 0]
        return self._emit(relax.op.nn.conv2d(
            x_q, relax.const(np.ascontiguousarray(w_q.transpose(2, 3, 1, 0))),
            strides=strides, padding=padding, dilation=dilation, groups=groups, data_layout="NHWC",
            kernel_layout="HWIO", out_dtype=ACC_DTYPE))

    def _emit_dot_conv(self, x_q, w_q, bias_q, scale, zero_y, q_lo, q_hi, out_dtype, strides, padding,
                       dilation, pad_value):
        """The convolution and its requantize as one TE function tensorized with the target's dot product
        (edgemb/backends/tvm_dot.py)."""
        from tvm import relax

        dot = self.dot
        packed = tvm_dot.pack_weights(w_q, dot.lanes)
        x_shape = tuple(int(d) for d in x_q.ty.shape)
        func, out_shape = tvm_dot.conv_prim_func(
            x_shape, str(x_q.ty.dtype), packed.shape, dot, out_channels=w_q.shape[0], strides=strides,
            padding=padding, dilation=dilation, pad_value=pad_value, zero=zero_y, lo=q_lo, hi=q_hi,
            out_dtype=out_dtype)
        gv = self.mutator.builder_.add_func(func, tvm_dot.DOT_BLOCK)
        args = [x_q, relax.const(packed, "int8"), relax.const(bias_q.astype(np.int32), "int32"),
                relax.const(np.asarray(scale, np.float32), "float32")]
        return self._emit(relax.call_tir(gv, args, relax.TensorType(out_shape, out_dtype)))

    def _emit_depthwise(self, x_q, w_q, bias_q, scale, zero_y, q_lo, q_hi, out_dtype, strides, padding,
                        dilation, pad_value):
        """A depthwise convolution and its requantize as one TE function with its own vectorized schedule."""
        from tvm import relax

        x_shape = tuple(int(d) for d in x_q.ty.shape)
        func, out_shape = tvm_dot.depthwise_prim_func(
            x_shape, str(x_q.ty.dtype), tuple(w_q.shape[2:]), strides=strides, padding=padding,
            dilation=dilation, pad_value=pad_value, zero=zero_y, lo=q_lo, hi=q_hi, out_dtype=out_dtype,
            lanes=self.dot.lanes)
        gv = self.mutator.builder_.add_func(func, tvm_dot.DEPTHWISE_BLOCK)
        weights = np.ascontiguousarray(w_q[:, 0].transpose(1, 2, 0))  # [C, 1, KH, KW] -> [KH, KW, C]
        args = [x_q, relax.const(weights, "int8"), relax.const(bias_q.astype(np.int32), "int32"),
                relax.const(np.asarray(scale, np.float32), "float32")]
        return self._emit(relax.call_tir(gv, args, relax.TensorType(out_shape, out_dtype)))

    def _lower_matmul(self, call):
        """The classifier: matmul(dequantize(x_q), dequantize(W_q)^T) with float logits out, as a 1x1 dot
        convolution over the int8 weights with a float epilogue ((acc - zp_x * sum(W)) * s_x * s_w); a float
        matmul over weights dequantized here when x_q is 16-bit."""
        from tvm import relax

        matched = self._match_matmul(call)
        if matched is None:
            return None
        x_var, scale_x, zero_x, w_q, scale_w = matched
        dot = self.dot
        x_dtype = str(x_var.ty.dtype)
        channels, depth = w_q.shape[:2]
        if x_dtype in SIXTEEN_BIT:  # weights [K, N]: the outer-reduction matmul rule's form
            w_float = w_q[:, :, 0, 0].astype(np.float32) * np.asarray(scale_w, np.float32).reshape(-1, 1)
            x = self._emit(relax.op.dequantize(x_var, relax.const(float(scale_x.reshape(())), "float32"),
                                               relax.const(int(zero_x.reshape(())), x_dtype), axis=-1))
            self._count("matmul", in_float=True)
            return self._emit(relax.op.matmul(x, relax.const(np.ascontiguousarray(w_float.T), "float32")))
        if dot is None or not tvm_dot.eligible(w_q, 1) or not tvm_dot.weights_fit(dot, w_q):
            return None
        zero = int(zero_x.reshape(()))
        zero_eff = zero + tvm_dot.byte_offset(x_dtype, dot)
        bias_q = -zero_eff * w_q.reshape(channels, -1).astype(np.int64).sum(axis=1)
        scale = float(scale_x.reshape(())) * np.broadcast_to(scale_w.reshape(-1), (channels,))
        packed = tvm_dot.pack_weights(w_q, dot.lanes)
        x_nhwc = self._emit(relax.op.reshape(x_var, [1, 1, 1, depth]))
        func, out_shape = tvm_dot.conv_prim_func(
            (1, 1, 1, depth), x_dtype, packed.shape, dot, out_channels=channels, strides=[1, 1],
            padding=[0, 0, 0, 0], dilation=[1, 1], pad_value=zero_eff, out_dtype="float32")
        gv = self.mutator.builder_.add_func(func, tvm_dot.DOT_BLOCK)
        args = [x_nhwc, relax.const(packed, "int8"), relax.const(bias_q.astype(np.int32), "int32"),
                relax.const(scale.astype(np.float32), "float32")]
        out = self._emit(relax.call_tir(gv, args, relax.TensorType(out_shape, "float32")))
        self._count("matmul", dot=True)
        return self._emit(relax.op.reshape(out, [1, channels]))

    def _match_matmul(self, call):
        """(x_q var, scale_x, zero_x, W_q as [O, I, 1, 1], scale_w (one, or one per output)) of the classifier's
        matmul over an 8- or 16-bit input and int8 weights, else None."""
        ops = self.ops
        x_dq = self._call(call.args[0], ops.dequantize)
        weights = call.args[1]
        transposed = self._call(weights, ops.permute_dims)
        if transposed is not None:
            axes = transposed.attrs.axes
            if axes is None or [int(a) for a in axes] != [1, 0]:
                return None
            weights = transposed.args[0]
        w_dq = self._call(weights, ops.dequantize)
        if x_dq is None or w_dq is None:
            return None
        x_var = self.mutator.visit_expr(x_dq.args[0])
        scale_x, zero_x = self._const(x_dq.args[1]), self._const(x_dq.args[2])
        w_q, scale_w, zero_w = (self._const(a) for a in w_dq.args)
        if any(v is None for v in (scale_x, zero_x, w_q, scale_w, zero_w)) or scale_x.size != 1 \
                or w_q.dtype != np.int8 or w_q.ndim != 2 or np.any(zero_w != 0) or x_var.ty.ndim != 2 \
                or str(x_var.ty.dtype) not in EIGHT_BIT + SIXTEEN_BIT or int(x_var.ty.shape[0]) != 1:
            return None
        if transposed is None:
            w_q, axis = w_q.T, 1
        else:
            axis = 0
        if scale_w.size not in (1, w_q.shape[0]) or (scale_w.size > 1 and int(w_dq.attrs.axis) != axis):
            return None
        return x_var, scale_x, zero_x, np.ascontiguousarray(w_q)[:, :, None, None], scale_w

    def _emit_requantize(self, acc, bias_q, mantissa, shift, zero_y, q_lo, q_hi, out_dtype):
        """(acc + bias) * m + 2**(s-1) >> s, + zero, clamp, cast: elementwise Relax ops (so layout
        conversion passes through them and FuseOps folds them into the convolution's epilogue)."""
        from tvm import relax

        per_channel = (1, 1, 1, -1)

        def channel_const(values, dtype):
            return relax.const(np.asarray(values).astype(dtype).reshape(per_channel), dtype)

        emit = self._emit
        value = emit(relax.op.add(acc, channel_const(bias_q, "int32")))
        value = emit(relax.op.astype(value, "int64"))
        value = emit(relax.op.multiply(value, channel_const(mantissa, "int64")))
        value = emit(relax.op.add(value, channel_const(np.left_shift(1, shift - 1) + (zero_y << shift),
                                                       "int64")))
        value = emit(relax.op.right_shift(value, channel_const(shift, "int64")))
        return self._clamp_cast(value, q_lo, q_hi, out_dtype)

    def _clamp_cast(self, value, lo: int, hi: int, out_dtype: str):
        """Clamp with scalar bounds (maximum/minimum, which layout passes understand) and narrow."""
        from tvm import relax

        emit, dtype = self._emit, str(value.ty.dtype)
        value = emit(relax.op.maximum(value, relax.const(lo, dtype)))
        value = emit(relax.op.minimum(value, relax.const(hi, dtype)))
        return emit(relax.op.astype(value, out_dtype))

    def _nhwc_input(self, var):
        """The NHWC form of a quantized NCHW tensor: the twin this rewrite made, else a transpose."""
        from tvm import relax

        if var in self.nhwc:
            return self.nhwc[var]
        return self._emit(relax.op.permute_dims(self.mutator.visit_expr(var), TO_NHWC))

    def _lower_add(self, q_call):
        """quantize(dequantize(a) + dequantize(b)) (the residual add) as an integer add in NHWC:
        ((a - za) * Ma + (b - zb) * Mb + 2**(s-1)) >> s + zy, Ma = sa / sy * 2**s (int64); in float (still NHWC)
        when a, b or the sum is 16-bit."""
        from tvm import relax

        out_dtype = str(q_call.attrs.out_dtype)
        add_call = self._call(q_call.args[0], self.ops.add)
        if add_call is None or out_dtype not in EIGHT_BIT + SIXTEEN_BIT:
            return None
        operands = [self._call(a, self.ops.dequantize) for a in add_call.args]
        params = [self._const(a) for a in q_call.args[1:]]
        if any(o is None for o in operands):
            return None
        params += [self._const(a) for o in operands for a in o.args[1:]]
        if any(p is None or p.size != 1 for p in params):
            return None
        scale_y, zero_y, scale_a, zero_a, scale_b, zero_b = (float(p.reshape(())) for p in params)
        tensors = [o.args[0] for o in operands]
        if any(self.mutator.visit_expr(t).ty.ndim != 4 for t in tensors) or any(t not in self.nhwc for t in tensors):
            return None  # only between tensors this rewrite produced (so both are NHWC already)
        if out_dtype in SIXTEEN_BIT or any(str(self.nhwc[t].ty.dtype) not in EIGHT_BIT for t in tensors):
            return self._emit_float_add([self.nhwc[t] for t in tensors], (scale_a, scale_b), (zero_a, zero_b),
                                        scale_y, zero_y, out_dtype)
        ratios = np.array([scale_a / scale_y, scale_b / scale_y])
        _, shifts = fixed_point(ratios)
        shift = int(shifts.min())
        emit = self._emit
        total = None
        for tensor, zero, ratio in zip(tensors, (zero_a, zero_b), ratios, strict=True):
            value = emit(relax.op.astype(self.nhwc[tensor], "int64"))
            value = emit(relax.op.subtract(value, relax.const(int(zero), "int64")))
            value = emit(relax.op.multiply(value, relax.const(int(np.round(ratio * 2.0**shift)), "int64")))
            total = value if total is None else emit(relax.op.add(total, value))
        total = emit(relax.op.add(total, relax.const((1 << (shift - 1)) + (int(zero_y) << shift), "int64")))
        total = emit(relax.op.right_shift(total, relax.const(shift, "int64")))
        info = np.iinfo(out_dtype)
        self._count("add")
        return self._clamp_cast(total, int(info.min), int(info.max), out_dtype)

    def _emit_float_add(self, tensors, scales, zeros, scale_y: float, zero_y: float, out_dtype: str):
        """quantize(dequantize(a) + dequantize(b)) on the NHWC twins: one fused elementwise kernel."""
        from tvm import relax

        emit, f32 = self._emit, "float32"
        total = None
        for tensor, scale, zero in zip(tensors, scales, zeros, strict=True):
            value = emit(relax.op.dequantize(tensor, relax.const(scale, f32),
                                             relax.const(int(zero), str(tensor.ty.dtype)), axis=-1, out_dtype=f32))
            total = value if total is None else emit(relax.op.add(total, value))
        self._count("add", in_float=True)
        return emit(relax.op.quantize(total, relax.const(scale_y, f32), relax.const(int(zero_y), out_dtype),
                                      axis=-1, out_dtype=out_dtype))


def _integer_bounds(lo: float, hi: float, scale: float, zero: int, dtype: str) -> tuple[int, int]:
    """A float clamp [lo, hi] (infinite when absent) as output integers, within the output type's range."""
    info = np.iinfo(dtype)
    q_lo = info.min if lo == -np.inf else max(info.min, zero + int(np.round(lo / scale)))
    q_hi = info.max if hi == np.inf else min(info.max, zero + int(np.round(hi / scale)))
    return q_lo, q_hi


def _conv_kind(weight_shape: tuple[int, ...], groups: int, strides: list[int]) -> str:
    """pointwise / depthwise / full, with a `-strided` suffix: the layer types the exactness tests pin."""
    if groups > 1 and groups == weight_shape[0] and weight_shape[1] == 1:
        kind = "depthwise"
    elif weight_shape[2:] == (1, 1):
        kind = "pointwise"
    else:
        kind = "full"
    return kind + ("-strided" if max(strides) > 1 else "")
