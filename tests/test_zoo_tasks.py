"""Detectors and segmenters in the zoo: torchvision's parameter counts and key layout, names, shapes."""

from __future__ import annotations

import pytest
import torch

from edgemb.errors import EdgembError
from edgemb.zoo import all_names, count_params, parse_model_name
from edgemb.zoo.weights.load import num_classes_of

# torchvision's published numbers (weights metadata of ssdlite320_mobilenet_v3_large, lraspp_mobilenet_v3_large).
PARAMS = {"ssdlite_v3l_1.0": 3_440_060, "lraspp_v3l_1.0": 3_221_538}

# Names and shapes of torchvision's own state_dict entries (detection/ssdlite.py, segmentation/lraspp.py).
TORCHVISION_KEYS = {
    "ssdlite_v3l_1.0": {
        "backbone.features.0.0.0.weight": (16, 3, 3, 3),
        "backbone.features.0.13.0.weight": (672, 112, 1, 1),  # C4 expansion ends the first stage
        "backbone.features.1.0.1.0.weight": (672, 1, 5, 5),  # its depthwise starts the second (slice keeps keys)
        "backbone.features.1.3.0.weight": (480, 80, 1, 1),  # reduced tail: 6 x 80 channels
        "backbone.extra.0.0.0.weight": (256, 480, 1, 1),
        "backbone.extra.3.2.0.weight": (128, 64, 1, 1),
        "head.classification_head.module_list.0.0.0.weight": (672, 1, 3, 3),
        "head.classification_head.module_list.0.1.weight": (546, 672, 1, 1),
        "head.regression_head.module_list.5.1.bias": (24,),
    },
    "lraspp_v3l_1.0": {
        "backbone.0.0.weight": (16, 3, 3, 3),
        "backbone.16.0.weight": (960, 160, 1, 1),
        "classifier.cbr.0.weight": (128, 960, 1, 1),
        "classifier.cbr.1.running_mean": (128,),
        "classifier.scale.1.weight": (128, 960, 1, 1),
        "classifier.low_classifier.weight": (21, 40, 1, 1),
        "classifier.high_classifier.bias": (21,),
    },
}


@pytest.mark.parametrize("name,expected", PARAMS.items())
def test_parameter_counts_match_torchvision_exactly(name, expected):
    assert count_params(parse_model_name(name).build()) == expected


@pytest.mark.parametrize("name", TORCHVISION_KEYS)
def test_state_dict_has_torchvision_names_and_shapes(name):
    state = parse_model_name(name).build().state_dict()
    for key, shape in TORCHVISION_KEYS[name].items():
        assert key in state, key
        assert tuple(state[key].shape) == shape, key


def test_task_names_parse_with_their_own_default_resolution():
    assert parse_model_name("ssdlite_v3l_1.0").resolution == 320
    assert parse_model_name("ssd_v1_0.5").resolution == 300
    assert parse_model_name("ssd_v1_0.5").name == "ssd_v1_0.5"
    assert parse_model_name("lraspp_v3l_1.0@256").name == "lraspp_v3l_1.0@256"
    assert parse_model_name("ssdlite_v2_0.5@160").info.task == "detection"
    with pytest.raises(EdgembError, match="multiple of 32"):
        parse_model_name("ssdlite_v2_0.5@300")
    with pytest.raises(EdgembError, match="unknown model"):
        parse_model_name("ssdlite_v9_1.0")


def test_every_detector_and_segmenter_runs_at_small_resolution():
    for name in all_names("detection"):
        model = parse_model_name(name).build(5)
        with torch.no_grad():
            logits, boxes = model(torch.zeros(2, 3, 128, 128))
        # 6 maps of 8, 4, 2, 1, 1, 1 cells (stride 16, then halving with rounding up)
        per_location = model.anchors.anchors_per_location()
        anchors = sum(a * s * s for a, s in zip(per_location, (8, 4, 2, 1, 1, 1), strict=True))
        assert logits.shape == (2, anchors, 5) and boxes.shape == (2, anchors, 4), name
    for name in all_names("segmentation"):
        with torch.no_grad():
            assert parse_model_name(name).build(3)(torch.zeros(2, 3, 128, 128)).shape == (2, 3, 16, 16)


def test_lraspp_backbone_is_dilated_like_torchvision():
    model = parse_model_name("lraspp_v3l_1.0").build()
    last = [m for m in model.backbone[13:].modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
    assert all(m.stride == (1, 1) and m.dilation == (2, 2) and m.padding == (4, 4) for m in last)
    assert model.backbone[12].block[1][0].dilation == (1, 1)


def test_class_count_is_read_back_from_a_checkpoint():
    for name, classes in (("ssdlite_v2_0.35", 11), ("ssd_v1_0.25", 4), ("lraspp_v3l_0.5", 3)):
        spec = parse_model_name(name)
        assert num_classes_of(spec.build(classes).state_dict(), spec) == classes
