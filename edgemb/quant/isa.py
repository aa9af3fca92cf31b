"""Which int8 scheme a target's integer kernels compute exactly, read from its ISA flags.

onnxruntime's x86 int8 GEMM/conv kernels multiply uint8 activations by int8 weights. With VNNI (AVX-512 VNNI,
AVX-VNNI or AMX) `vpdpbusd` accumulates the products straight into int32: exact. On AVX2 without VNNI the
kernels use `vpmaddubsw`, which adds two u8 x s8 products into a *saturating int16*: 2 x 255 x 127 = 64,770
overflows 32,767, so activations near the top of their range with large weights of the same sign are clipped
(onnxruntime's quantization docs warn about this and suggest reduce_range). Keeping weights in 7 bits
([-63, 63]) bounds the pair sum at 2 x 255 x 63 = 32,130: exact again, at the price of one weight bit, which
output-aware rounding mostly recovers. ARM kernels (NEON umull/uadalp, sdot/udot) widen before accumulating
and are exact with full 8-bit weights. Activations stay uint8 everywhere (the QDQ graph keeps its form).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
X86_ARCHES = ("x86_64", "amd64", "x86")
FULL_WEIGHT_MAX = 127
REDUCED_WEIGHT_MAX = 63  # symmetric 7-bit: |q| <= 63 keeps 2 x 255 x |q| below 32,767 (int16 pair sums)


@dataclass(frozen=True)
class Int8Scheme:
    """The integer formats chosen for a target and why; recorded verbatim in quantize.json."""

    isa: tuple[str, ...]
    arch: str
    activation_type: str
    weight_max: int
    reason: str

    @property
    def reduce_range(self) -> bool:
        """Weights use 7 bits instead of 8."""
        return self.weight_max < FULL_WEIGHT_MAX

    def to_dict(self) -> dict[str, Any]:
        """JSON form with the derived reduce_range flag."""
        return {**asdict(self), "isa": list(self.isa), "reduce_range": self.reduce_range}


def choose_scheme(isa: Iterable[str], arch: str = "x86_64") -> Int8Scheme:
    """The scheme the target's int8 kernels compute without saturating, from its ISA flags and architecture."""
    flags = tuple(isa)
    if arch.lower() not in X86_ARCHES:
        return Int8Scheme(flags, arch, "uint8", FULL_WEIGHT_MAX,
                          f"{arch}: int8 kernels widen products before accumulating (exact with 8-bit weights)")
    vnni = [f for f in flags if f in VNNI_FLAGS]
    if vnni:
        return Int8Scheme(flags, arch, "uint8", FULL_WEIGHT_MAX,
                          f"{vnni[0]}: u8 x s8 products accumulate in int32 (exact with 8-bit weights)")
    return Int8Scheme(flags, arch, "uint8", REDUCED_WEIGHT_MAX,
                      "x86 without VNNI: u8 x s8 kernels (vpmaddubsw) saturate int16 pair sums with 8-bit "
                      "weights; 7-bit weights ([-63, 63]) keep every sum exact")


def host_scheme() -> Int8Scheme:
    """The scheme for this machine (the x86 target reads its flags from /proc/cpuinfo)."""
    from edgemb.targets import get_target

    target = get_target("x86")
    return choose_scheme(target.isa, target.arch)
