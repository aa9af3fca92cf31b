"""LR-ASPP (MobileNetV3 paper, section 6.4) on MobileNetV3-Large, in torchvision's module layout.

The network ends at class logits at output stride 8; upsampling to the image and the argmax run on the host
(`edgemb.tasks.segmentation`), shared by every backend and the float reference.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from edgemb.zoo.mobilenet_v3 import mobilenet_v3_large

INTER_CHANNELS = 128


def dilate_last_stage(features: nn.Sequential, dilation: int = 2) -> None:
    """Trade the last stride-2 for dilation (output stride 16, as torchvision's `dilated=True` backbone)."""
    last = max(i for i, block in enumerate(features) if any(
        isinstance(m, nn.Conv2d) and m.stride == (2, 2) for m in block.modules()))
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = x
        for i, stage in enumerate(self.backbone):
            x = stage(x)
            if i == self.low_index:
                low = x
        return self.classifier(low, x)


def lraspp_v3_large(num_classes: int = 21, width_mult: float = 1.0) -> LRASPP:
    """torchvision's lraspp_mobilenet_v3_large: dilated V3-Large, low tap at C2 (stride 8), high at the end."""
    features = mobilenet_v3_large(1, width_mult).features
    strided = [i for i, block in enumerate(features) if i > 0 and any(
        isinstance(m, nn.Conv2d) and m.stride == (2, 2) for m in block.modules())]
    dilate_last_stage(features)
    # stage starts: stem, the strided blocks, the last conv; torchvision taps the 4th from the end (C2).
    stage_indices = [0, *strided, len(features) - 1]
    return LRASPP(features, stage_indices[-4], num_classes).eval()
