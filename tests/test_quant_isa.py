"""The int8 scheme follows the target's ISA flags (explicit flag sets, never this host's), and is applied."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgemb.quant.isa import REDUCED_WEIGHT_MAX, choose_scheme
from edgemb.stages.quantize import quantize_model

AVX2_ONLY = ("sse4_2", "avx", "avx2", "fma")
AVX512_VNNI = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni")
INT16_MAX = 32767


def test_avx2_without_vnni_gets_weights_whose_pair_sums_fit_int16():
    scheme = choose_scheme(AVX2_ONLY, "x86_64")
    assert scheme.reduce_range and scheme.weight_max == REDUCED_WEIGHT_MAX
    assert 2 * 255 * scheme.weight_max <= INT16_MAX < 2 * 255 * 127  # vpmaddubsw adds two u8 x s8 products
    assert scheme.activation_type == "uint8" and "vpmaddubsw" in scheme.reason
    assert scheme.to_dict()["isa"] == list(AVX2_ONLY)


@pytest.mark.parametrize("flags", [AVX512_VNNI, ("avx2", "fma", "avx_vnni"), ("avx2", "amx_int8")])
def test_vnni_keeps_full_8_bit_weights(flags):
    scheme = choose_scheme(flags, "x86_64")
    assert not scheme.reduce_range and scheme.weight_max == 127 and scheme.activation_type == "uint8"


def test_arm_targets_keep_full_8_bit_weights():
    scheme = choose_scheme(("neon", "fp-armv8", "crc"), "aarch64")
    assert scheme.weight_max == 127 and "aarch64" in scheme.reason


@pytest.mark.parametrize("flags,limit", [(AVX2_ONLY, 63), (AVX512_VNNI, 127)])
def test_quantize_applies_and_records_the_scheme(tmp_path, flags, limit):
    report = quantize_model("v1_0.25", "fashion-mnist:train:64", tmp_path / "q", weights="ref", isa=flags)
    assert report["isa"]["isa"] == list(flags) and report["isa"]["weight_max"] == limit
    assert report["settings"]["weight_type"] == f"int8 symmetric [-{limit}, {limit}]"
    model = onnx.load(str(tmp_path / "q" / "model.int8.onnx"))
    weights = [numpy_helper.to_array(t) for t in model.graph.initializer if t.name.endswith(".weight_quantized")]
    largest = max(int(np.abs(w.astype(np.int32)).max()) for w in weights)
    assert largest == limit, f"weights should use the whole [-{limit}, {limit}] range, largest |q| = {largest}"
