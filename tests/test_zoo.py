"""The zoo reproduces the published parameter and MAC counts and torchvision's checkpoint layout."""

from __future__ import annotations

import pytest
import torch

from edgemb.errors import EdgembError
from edgemb.zoo import all_names, count_macs, count_params, parse_model_name
from edgemb.zoo.layers import make_divisible

PARAMS = {"v1_1.0": 4_231_976, "v2_1.0": 3_504_872, "v3l_1.0": 5_483_032, "v3s_1.0": 2_542_856}
MACS = {"v1_1.0": 569e6, "v2_1.0": 301e6, "v3l_1.0": 217e6, "v3s_1.0": 56.5e6,
        "v1_0.5@160": 76.5e6, "v2_0.35": 59.3e6, "v2_1.4": 582e6}


@pytest.mark.parametrize("name,expected", PARAMS.items())
def test_parameter_counts_match_torchvision_exactly(name, expected):
    assert count_params(parse_model_name(name).build(1000)) == expected


@pytest.mark.parametrize("name,expected", MACS.items())
def test_mac_counts_within_one_percent_of_the_papers(name, expected):
    spec = parse_model_name(name)
    macs = count_macs(spec.build(), spec.resolution)
    assert abs(macs - expected) / expected < 0.01, f"{name}: {macs / 1e6:.1f}M vs {expected / 1e6}M"


def test_make_divisible_follows_the_reference_rounding():
    assert make_divisible(32 * 0.35) == 16  # 11.2 rounds to 8, which loses > 10%, so one step up
    assert make_divisible(1280 * 1.4) == 1792
    assert make_divisible(24 * 0.5) == 16  # 12 rounds up to 16 (8 would lose > 10%)
    assert make_divisible(16 * 0.75) == 16
    assert make_divisible(72 * 0.75) == 56


def test_every_listed_model_builds_and_runs_at_small_resolution():
    for name in all_names("classification"):
        spec = parse_model_name(f"{name}@64")
        model = spec.build(7)
        with torch.no_grad():
            assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 7)


def test_v2_shortcut_only_at_stride_one_with_equal_shapes():
    model = parse_model_name("v2_1.0").build()
    blocks = list(model.features)[1:-1]
    assert [b.use_res_connect for b in blocks] == [
        False, False, True, False, True, True, False, True, True, True, False, True, True, False, True, True, False,
    ]


def test_v3_uses_hswish_se_with_hardsigmoid_and_5x5_depthwise():
    model = parse_model_name("v3l_1.0").build()
    kinds = {type(m).__name__ for m in model.modules()}
    assert {"Hardswish", "Hardsigmoid", "SqueezeExcitation"} <= kinds
    kernels = {m.kernel_size for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1}
    assert (5, 5) in kernels and (3, 3) in kernels


def test_v1_width_multiplier_scales_every_layer():
    wide = parse_model_name("v1_1.0").build()
    narrow = parse_model_name("v1_0.25").build()
    assert wide.last_channel == 1024 and narrow.last_channel == 256
    assert len(wide.features) == len(narrow.features) == 14  # stem + 13 depthwise-separable blocks


# Names and shapes of torchvision's own state_dict entries (torchvision/models/mobilenetv2.py, mobilenetv3.py).
TORCHVISION_KEYS = {
    "v2_1.0": {
        "features.0.0.weight": (32, 3, 3, 3),
        "features.0.1.running_var": (32,),
        "features.1.conv.0.0.weight": (32, 1, 3, 3),
        "features.1.conv.1.weight": (16, 32, 1, 1),
        "features.1.conv.2.bias": (16,),
        "features.2.conv.0.0.weight": (96, 16, 1, 1),
        "features.2.conv.1.0.weight": (96, 1, 3, 3),
        "features.2.conv.2.weight": (24, 96, 1, 1),
        "features.17.conv.2.weight": (320, 960, 1, 1),
        "features.18.0.weight": (1280, 320, 1, 1),
        "classifier.1.weight": (1000, 1280),
        "classifier.1.bias": (1000,),
    },
    "v3l_1.0": {
        "features.0.0.weight": (16, 3, 3, 3),
        "features.1.block.0.0.weight": (16, 1, 3, 3),
        "features.1.block.1.0.weight": (16, 16, 1, 1),
        "features.4.block.1.0.weight": (72, 1, 5, 5),
        "features.4.block.2.fc1.weight": (24, 72, 1, 1),
        "features.4.block.2.fc2.bias": (72,),
        "features.4.block.3.0.weight": (40, 72, 1, 1),
        "features.16.0.weight": (960, 160, 1, 1),
        "classifier.0.weight": (1280, 960),
        "classifier.3.weight": (1000, 1280),
    },
    "v3s_1.0": {
        "features.1.block.0.0.weight": (16, 1, 3, 3),
        "features.1.block.1.fc1.weight": (8, 16, 1, 1),
        "features.1.block.2.0.weight": (16, 16, 1, 1),
        "features.12.0.weight": (576, 96, 1, 1),
        "classifier.0.weight": (1024, 576),
        "classifier.3.weight": (1000, 1024),
    },
}


@pytest.mark.parametrize("name", TORCHVISION_KEYS)
def test_state_dict_uses_torchvision_key_names_and_shapes(name):
    state = parse_model_name(name).build().state_dict()
    for key, shape in TORCHVISION_KEYS[name].items():
        assert key in state, key
        assert tuple(state[key].shape) == shape, key
    bn_buffers = [k for k in state if k.endswith("num_batches_tracked")]
    assert bn_buffers, "torchvision checkpoints carry num_batches_tracked; strict loading needs them"


@pytest.mark.parametrize("name,suffix", [("v2_1.0", "@64"), ("v3l_1.0", "")])
def test_v3_batchnorm_settings_match_torchvision(name, suffix):
    bns = [m for m in parse_model_name(name + suffix).build().modules() if isinstance(m, torch.nn.BatchNorm2d)]
    expected = (1e-5, 0.1) if name.startswith("v2") else (1e-3, 0.01)
    assert all((bn.eps, bn.momentum) == expected for bn in bns)


@pytest.mark.parametrize("bad", ["v4_1.0", "v2_0.9", "mobilenet", "v3l_1.0@100", "v2_1.0@abc", "v2_1.0@0"])
def test_bad_model_names_are_clear_errors(bad):
    with pytest.raises(EdgembError) as info:
        parse_model_name(bad)
    assert bad.split("@")[0] in str(info.value) or "resolution" in str(info.value)


def test_unknown_name_lists_close_matches():
    with pytest.raises(EdgembError, match=r"did you mean .*v3l_1\.0"):
        parse_model_name("v3l_1.1")


def test_resolution_suffix_and_canonical_names():
    spec = parse_model_name("V2_1.0@160")
    assert (spec.family, spec.alpha, spec.resolution, spec.name) == ("v2", 1.0, 160, "v2_1.0@160")
    assert parse_model_name("v3s_0.75@224").name == "v3s_0.75"
    assert parse_model_name("v1_0.25@32").resolution == 32
