"""MobileNetV1 (Howard et al. 2017): a stem conv then 13 depthwise-separable blocks, ReLU6 throughout."""

from __future__ import annotations

import torch
from torch import nn

from edgemb.zoo.layers import ConvNormActivation, init_weights

# (pointwise output channels, depthwise stride) for the 13 blocks after the stem, Table 1 of the paper.
V1_SETTING: tuple[tuple[int, int], ...] = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1),
    (1024, 2), (1024, 1),
)
STEM_CHANNELS = 32


class DepthwiseSeparable(nn.Module):
    """3x3 depthwise conv + BN + ReLU6, then 1x1 pointwise conv + BN + ReLU6."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.depthwise = ConvNormActivation(in_channels, in_channels, 3, stride, groups=in_channels)
        self.pointwise = ConvNormActivation(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class MobileNetV1(nn.Module):
    """MobileNetV1 with width multiplier `width_mult` (alpha) applied to every layer as in the paper."""

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.001) -> None:
        super().__init__()
        channels = int(STEM_CHANNELS * width_mult)
        features: list[nn.Module] = [ConvNormActivation(3, channels, 3, stride=2)]
        for out_channels, stride in V1_SETTING:
            out_channels = int(out_channels * width_mult)
            features.append(DepthwiseSeparable(channels, out_channels, stride))
            channels = out_channels
        self.features = nn.Sequential(*features)
        self.last_channel = channels
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(channels, num_classes))
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = nn.functional.adaptive_avg_pool2d(x, 1)
        return self.classifier(torch.flatten(x, 1))
