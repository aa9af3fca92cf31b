"""LR-ASPP (MobileNetV3 paper, section 6.4) on MobileNetV3-Large (torchvision's module layout) and MobileNetV2.

The network ends at class logits at output stride 8; upsampling to the image and the argmax run on the host
(`edgemb.tasks.segmentation`), shared by every backend and the float reference.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from edgemb.errors import EdgembError
from edgemb.zoo.layers import is_strided
from edgemb.zoo.mobilenet_v2 import MobileNetV2
from edgemb.zoo.mobilenet_v3 import mobilenet_v3_large

INTER_CHANNELS = 128


def output_strides(features: nn.Sequential) -> list[int]:
    """The output stride after each block of a feature stack (before any dilation), to find a block by stride."""
    strides, stride = [], 1
    for block in features:
        stride *= 2 if is_strided(block) else 1
        strides.append(stride)
    return strides


def dilate_last_stage(features: nn.Sequential, dilation: int = 2) -> None:
    """Trade the last stride-2 for dilation (output stride 16, as torchvision's `dilated=True` backbone)."""
    last = max(i for i, block in enumerate(features) if is_strided(block))
    for block in features[last:]:
        for conv in block.modules():
            if isinstance(conv, nn.Conv2d) and conv.kernel_size[0] > 1 and conv.groups > 1:
                conv.stride = (1, 1)
                conv.dilation = (dilation, dilation)
                conv.padding = ((conv.kernel_size[0] - 1) // 2 * dilation,) * 2


class LRASPPHead(nn.Module):
    """High-level features gated by a global-pool attention, upsampled and added to a low-level classifier."""

    def __init__(self, low_channels: int, high_channels: int, num_classes: int,
                 inter_channels: int = INTER_CHANNELS) -> None:
        super().__init__()
        self.cbr = nn.Sequential(nn.Conv2d(high_channels, inter_channels, 1, bias=False),
                                 nn.BatchNorm2d(inter_channels), nn.ReLU(inplace=True))
        self.scale = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(high_channels, inter_channels, 1, bias=False),
                                   nn.Sigmoid())
        self.low_classifier = nn.Conv2d(low_channels, num_classes, 1)
        self.high_classifier = nn.Conv2d(inter_channels, num_classes, 1)

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        x = self.cbr(high) * self.scale(high)
        x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.low_classifier(low) + self.high_classifier(x)


class LRASPP(nn.Module):
    """Backbone stages 0..last with a low (stride 8) and a high (stride 16) tap; returns stride-8 logits."""

    output_names = ("seg_logits",)  # ONNX output names of the raw outputs

    def __init__(self, backbone: nn.Sequential, low_index: int, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.low_index = low_index
        self.num_classes = num_classes
        low_channels = [m for m in backbone[low_index].modules() if isinstance(m, nn.Conv2d)][-1].out_channels
        high_channels = [m for m in backbone[-1].modules() if isinstance(m, nn.Conv2d)][-1].out_channels
        self.classifier = LRASPPHead(low_channels, high_channels, num_classes)

    def forward(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Logits at stride 8; with `start` > 0, x is the output of `backbone_prefix(start)` (training on cached
        features of a frozen prefix), which is the low tap itself when start == low_index + 1."""
        low = x
        for i, stage in enumerate(self.backbone):
            if i < start:
                continue
            x = stage(x)
            if i == self.low_index:
                low = x
        return self.classifier(low, x)

    def backbone_prefix(self, blocks: int) -> nn.Sequential:
        """The first `blocks` backbone blocks: forward(prefix(x), start=blocks) is forward(x). The prefix may end at
        the low tap but not after it (the head reads the tap)."""
        if not 0 <= blocks <= self.low_index + 1:
            raise EdgembError(f"a frozen prefix of {blocks} blocks passes the low tap (block {self.low_index}): "
                              f"use at most {self.low_index + 1}")
        return self.backbone[:blocks]


def lraspp_v3_large(num_classes: int = 21, width_mult: float = 1.0) -> LRASPP:
    """torchvision's lraspp_mobilenet_v3_large: dilated V3-Large, low tap at C2 (stride 8), high at the end."""
    features = mobilenet_v3_large(1, width_mult).features
    strided = [i for i, block in enumerate(features) if i > 0 and is_strided(block)]
    dilate_last_stage(features)
    # stage starts: stem, the strided blocks, the last conv; torchvision taps the 4th from the end (C2).
    stage_indices = [0, *strided, len(features) - 1]
    return LRASPP(features, stage_indices[-4], num_classes).eval()


def lraspp_v2(num_classes: int = 21, width_mult: float = 1.0, features: nn.Sequential | None = None) -> LRASPP:
    """LR-ASPP on MobileNetV2 (no torchvision counterpart): the last stride-2 stage dilated (output stride 16, the
    1280-channel last conv as the high tap), the low tap at the end of the stride-8 stage (block 6, the most
    processed stride-8 features). `features` reuses a classifier's (the ImageNet checkpoint's); it is dilated in
    place."""
    features = MobileNetV2(1, width_mult).features if features is None else features
    low_index = output_strides(features).index(16) - 1
    dilate_last_stage(features)
    return LRASPP(features, low_index, num_classes).eval()
