"""SSD-style detectors on the zoo's MobileNet backbones, in torchvision's module layout.

The network ends at its raw head outputs: class logits (N, anchors, classes) and box regressions
(N, anchors, 4). Default boxes, decoding and NMS live in `edgemb.tasks.detection` and run on the host, so
every backend and the float reference share them.

- `ssdlite_v3l`: torchvision's `ssdlite320_mobilenet_v3_large` (reduced tail, SSDLite head, 320x320).
- `ssdlite_v2`: the MobileNetV2 paper's SSDLite (section 6.2): the same head on MobileNetV2.
- `ssd_v1`: MobileNet-SSD: MobileNetV1 features from conv11 and conv13, 1x1 SSD heads, VOC classes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from edgemb.errors import EdgembError
from edgemb.zoo.layers import ConvNormActivation, is_strided
from edgemb.zoo.mobilenet_v1 import MobileNetV1
from edgemb.zoo.mobilenet_v2 import MobileNetV2
from edgemb.zoo.mobilenet_v3 import V3_LARGE, V3_LARGE_HEAD, BneckRow, MobileNetV3

# torchvision's SSDLite BatchNorm: eps matters for checkpoints trained with it, momentum only for training.
SSD_NORM = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)
# Channels of the four extra layers after the backbone (width 1.0), as in the MobileNetV2 paper's SSDLite.
SSDLITE_EXTRAS = (512, 256, 256, 128)
# MobileNet-SSD's extra layers: (1x1 bottleneck channels, 3x3 stride-2 output channels).
SSD_V1_EXTRAS = ((256, 512), (128, 256), (128, 256), (64, 128))
MIN_DEPTH = 16


@dataclass(frozen=True)
class AnchorConfig:
    """How default boxes are laid over the feature maps (torchvision's DefaultBoxGenerator settings).

    Feature map k has stride `first_stride * 2**k` (stride-2 3x3 convs with padding 1, so sizes round up);
    each location holds boxes of scale s_k and sqrt(s_k s_k+1) at ratio 1 plus a pair per aspect ratio.
    """

    aspect_ratios: tuple[tuple[int, ...], ...]
    min_ratio: float
    max_ratio: float
    first_stride: int = 16
    box_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)

    def anchors_per_location(self) -> list[int]:
        """Boxes predicted at each location of each feature map."""
        return [2 + 2 * len(ratios) for ratios in self.aspect_ratios]


SSDLITE_ANCHORS = AnchorConfig(tuple((2, 3) for _ in range(6)), 0.2, 0.95)
SSD_V1_ANCHORS = AnchorConfig(((2,), *((2, 3) for _ in range(5))), 0.2, 0.95)


def reduced_tail(setting: tuple[BneckRow, ...], stages: int = 3) -> tuple[BneckRow, ...]:
    """Halve the channels of the last stage (MobileNetV3 paper, Table 6), as torchvision's detector does."""
    rows = list(setting)
    first = len(rows) - stages
    for i in range(first, len(rows)):
        inp, kernel, expanded, out, use_se, act, stride = rows[i]
        inp = inp if i == first else inp // 2
        expanded = expanded if i == first else expanded // 2
        rows[i] = (inp, kernel, expanded, out // 2, use_se, act, stride)
    return tuple(rows)


def _inner(block: nn.Module) -> nn.Sequential:
    """The layer list of an inverted residual (`block` in V3, `conv` in V2)."""
    return block.block if hasattr(block, "block") else block.conv


def split_at_last_expansion(features: nn.Sequential) -> nn.Sequential:
    """Cut a V2/V3 feature stack after the expansion of its last strided block (section 6.3 of MobileNetV3).

    The first part ends at output stride 16 with many channels, the second at stride 32; SSDLite predicts
    from both.
    """
    c4 = max(i for i, block in enumerate(features) if i > 0 and is_strided(block))
    inner = _inner(features[c4])
    return nn.Sequential(
        nn.Sequential(*features[:c4], inner[0]),
        nn.Sequential(inner[1:], *features[c4 + 1:]),
    )


def _out_channels(module: nn.Module) -> int:
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1].out_channels


def ssdlite_extra(in_channels: int, out_channels: int, norm: Callable[[int], nn.Module]) -> nn.Sequential:
    """1x1 to half the channels, 3x3 depthwise stride 2, 1x1 to out: an SSDLite extra layer."""
    mid = out_channels // 2
    return nn.Sequential(
        ConvNormActivation(in_channels, mid, 1, norm_layer=norm),
        ConvNormActivation(mid, mid, 3, 2, groups=mid, norm_layer=norm),
        ConvNormActivation(mid, out_channels, 1, norm_layer=norm),
    )


def ssd_extra(in_channels: int, mid: int, out_channels: int, norm: Callable[[int], nn.Module]) -> nn.Sequential:
    """1x1 bottleneck then a full 3x3 stride-2 conv: a MobileNet-SSD extra layer."""
    return nn.Sequential(
        ConvNormActivation(in_channels, mid, 1, norm_layer=norm),
        ConvNormActivation(mid, out_channels, 3, 2, norm_layer=norm),
    )


class FeatureExtractor(nn.Module):
    """Backbone split into two stages (`features`) followed by stride-2 `extra` layers; one map per stage."""

    def __init__(self, features: nn.Sequential, extra: nn.ModuleList) -> None:
        super().__init__()
        self.features = features
        self.extra = extra

    def forward(self, x: torch.Tensor, start: int = 0) -> list[torch.Tensor]:
        """One map per stage; with `start` > 0, x is the output of the first stage's first `start` blocks."""
        maps = []
        for i, stage in enumerate((*self.features, *self.extra)):
            x = stage[start:](x) if i == 0 and start else stage(x)
            maps.append(x)
        return maps


class ScoringHead(nn.Module):
    """One predictor per feature map; outputs are flattened to (N, maps*H*W*anchors, columns) in anchor order."""

    def __init__(self, module_list: nn.ModuleList, num_columns: int) -> None:
        super().__init__()
        self.module_list = module_list
        self.num_columns = num_columns

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        outputs = []
        for predictor, x in zip(self.module_list, maps, strict=True):
            y = predictor(x)
            n, _, h, w = y.shape
            y = y.view(n, -1, self.num_columns, h, w).permute(0, 3, 4, 1, 2)
            outputs.append(y.reshape(n, -1, self.num_columns))
        return torch.cat(outputs, dim=1)


class DetectionHead(nn.Module):
    """Class-logit and box-regression predictors over every feature map (torchvision's SSD head layout)."""

    def __init__(self, predictor: Callable[[int, int], nn.Module], in_channels: list[int], anchors: list[int],
                 num_classes: int) -> None:
        super().__init__()
        self.classification_head = ScoringHead(
            nn.ModuleList(predictor(c, num_classes * a) for c, a in zip(in_channels, anchors, strict=True)),
            num_classes)
        self.regression_head = ScoringHead(
            nn.ModuleList(predictor(c, 4 * a) for c, a in zip(in_channels, anchors, strict=True)), 4)

    def forward(self, maps: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.classification_head(maps), self.regression_head(maps)


def ssdlite_predictor(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 depthwise + BN + ReLU6 then a 1x1 conv with bias (SSDLite's separable prediction layer)."""
    return nn.Sequential(
        ConvNormActivation(in_channels, in_channels, 3, groups=in_channels, norm_layer=SSD_NORM),
        nn.Conv2d(in_channels, out_channels, 1),
    )


def ssd_predictor(in_channels: int, out_channels: int) -> nn.Conv2d:
    """A 1x1 conv with bias (MobileNet-SSD's mbox_loc/mbox_conf layers)."""
    return nn.Conv2d(in_channels, out_channels, 1)


class SSD(nn.Module):
    """An SSD detector whose forward returns raw (class logits, box regressions); `anchors` says how to decode."""

    output_names = ("cls_logits", "bbox_regression")  # ONNX output names of the raw outputs

    def __init__(self, backbone: FeatureExtractor, head: DetectionHead, anchors: AnchorConfig,
                 num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.anchors = anchors
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor, start: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw outputs; with `start` > 0, x is the output of `backbone_prefix(start)` (training on cached features
        of a frozen prefix)."""
        return self.head(self.backbone(x, start))

    def backbone_prefix(self, blocks: int) -> nn.Sequential:
        """The first `blocks` blocks of the backbone's first stage: forward(prefix(x), start=blocks) is forward(x).
        The prefix ends within the first stage, before the first map the head reads."""
        first = self.backbone.features[0]
        if not 0 <= blocks <= len(first):
            raise EdgembError(f"a frozen prefix of {blocks} blocks passes the first detection map (after block "
                              f"{len(first) - 1}): use at most {len(first)}")
        return first[:blocks]


def _normal_init(module: nn.Module) -> None:
    """Heads and extras start from N(0, 0.03) as in torchvision's SSDLite (kaiming is too hot for them)."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.normal_(layer.weight, 0.0, 0.03)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def _ssdlite(features: nn.Sequential, num_classes: int, width_mult: float) -> SSD:
    stages = split_at_last_expansion(features)
    depth = [max(MIN_DEPTH, int(d * width_mult)) for d in SSDLITE_EXTRAS]
    channels = [_out_channels(stages[0]), _out_channels(stages[1])]
    extra = nn.ModuleList()
    for out in depth:
        extra.append(ssdlite_extra(channels[-1], out, SSD_NORM))
        channels.append(out)
    head = DetectionHead(ssdlite_predictor, channels, SSDLITE_ANCHORS.anchors_per_location(), num_classes)
    _normal_init(extra)
    _normal_init(head)
    return SSD(FeatureExtractor(stages, extra), head, SSDLITE_ANCHORS, num_classes).eval()


def ssdlite_v3_large(num_classes: int = 91, width_mult: float = 1.0) -> SSD:
    """torchvision's ssdlite320_mobilenet_v3_large: reduced-tail V3-Large with an SSDLite head."""
    backbone = MobileNetV3(reduced_tail(V3_LARGE), V3_LARGE_HEAD // 2, 1, width_mult)
    return _ssdlite(backbone.features, num_classes, width_mult)


def ssdlite_v2(num_classes: int = 91, width_mult: float = 1.0, features: nn.Sequential | None = None) -> SSD:
    """SSDLite on MobileNetV2 (MobileNetV2 paper, section 6.2); `features` reuses a trained classifier's."""
    return _ssdlite(MobileNetV2(1, width_mult).features if features is None else features, num_classes, width_mult)


def ssd_v1(num_classes: int = 21, width_mult: float = 1.0) -> SSD:
    """MobileNet-SSD: V1 conv11 (stride 16) and conv13 (stride 32) plus four extras, 1x1 SSD heads."""
    features = MobileNetV1(1, width_mult).features
    stages = nn.Sequential(nn.Sequential(*features[:12]), nn.Sequential(*features[12:]))
    channels = [_out_channels(stages[0]), _out_channels(stages[1])]
    extra = nn.ModuleList()
    for mid, out in SSD_V1_EXTRAS:
        mid, out = max(MIN_DEPTH, int(mid * width_mult)), max(MIN_DEPTH, int(out * width_mult))
        extra.append(ssd_extra(channels[-1], mid, out, SSD_NORM))
        channels.append(out)
    head = DetectionHead(ssd_predictor, channels, SSD_V1_ANCHORS.anchors_per_location(), num_classes)
    _normal_init(extra)
    _normal_init(head)
    return SSD(FeatureExtractor(stages, extra), head, SSD_V1_ANCHORS, num_classes).eval()
