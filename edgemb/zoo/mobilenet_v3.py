"""MobileNetV3-Large/Small (Howard et al. 2019): SE with hard-sigmoid, h-swish, 5x5 depthwise, lean head."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from edgemb.zoo.layers import ConvNormActivation, SqueezeExcitation, init_weights, make_divisible

# One bneck row of Tables 1 and 2 of the paper: input, kernel, expanded, output channels, SE, activation
# ("RE" ReLU, "HS" h-swish) and stride. Channel counts are for width 1.0.
BneckRow = tuple[int, int, int, int, bool, str, int]

V3_LARGE: tuple[BneckRow, ...] = (
    (16, 3, 16, 16, False, "RE", 1),
    (16, 3, 64, 24, False, "RE", 2),
    (24, 3, 72, 24, False, "RE", 1),
    (24, 5, 72, 40, True, "RE", 2),
    (40, 5, 120, 40, True, "RE", 1),
    (40, 5, 120, 40, True, "RE", 1),
    (40, 3, 240, 80, False, "HS", 2),
    (80, 3, 200, 80, False, "HS", 1),
    (80, 3, 184, 80, False, "HS", 1),
    (80, 3, 184, 80, False, "HS", 1),
    (80, 3, 480, 112, True, "HS", 1),
    (112, 3, 672, 112, True, "HS", 1),
    (112, 5, 672, 160, True, "HS", 2),
    (160, 5, 960, 160, True, "HS", 1),
    (160, 5, 960, 160, True, "HS", 1),
)
V3_LARGE_HEAD = 1280

V3_SMALL: tuple[BneckRow, ...] = (
    (16, 3, 16, 16, True, "RE", 2),
    (16, 3, 72, 24, False, "RE", 2),
    (24, 3, 88, 24, False, "RE", 1),
    (24, 5, 96, 40, True, "HS", 2),
    (40, 5, 240, 40, True, "HS", 1),
    (40, 5, 240, 40, True, "HS", 1),
    (40, 5, 120, 48, True, "HS", 1),
    (48, 5, 144, 48, True, "HS", 1),
    (48, 5, 288, 96, True, "HS", 2),
    (96, 5, 576, 96, True, "HS", 1),
    (96, 5, 576, 96, True, "HS", 1),
)
V3_SMALL_HEAD = 1024

# torchvision's MobileNetV3 BatchNorm settings; they matter for checkpoints trained with them.
V3_NORM = partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)


@dataclass(frozen=True)
class BlockConfig:
    """One bneck row with the width multiplier already applied."""

    input_channels: int
    kernel: int
    expanded_channels: int
    out_channels: int
    use_se: bool
    use_hs: bool
    stride: int

    @classmethod
    def from_row(cls, row: BneckRow, width_mult: float) -> BlockConfig:
        """Scale a paper row by the width multiplier, rounding channels to multiples of 8."""
        inp, kernel, expanded, out, use_se, activation, stride = row
        if activation not in ("RE", "HS"):
            raise ValueError(f"unknown activation {activation!r} in bneck row {row}")
        return cls(
            make_divisible(inp * width_mult), kernel, make_divisible(expanded * width_mult),
            make_divisible(out * width_mult), use_se, activation == "HS", stride,
        )


class InvertedResidualV3(nn.Module):
    """bneck: optional 1x1 expand, kxk depthwise, optional SE, 1x1 linear projection, shortcut if shapes allow."""

    def __init__(self, cfg: BlockConfig) -> None:
        super().__init__()
        self.use_res_connect = cfg.stride == 1 and cfg.input_channels == cfg.out_channels
        activation = nn.Hardswish if cfg.use_hs else nn.ReLU
        layers: list[nn.Module] = []
        if cfg.expanded_channels != cfg.input_channels:
            layers.append(ConvNormActivation(cfg.input_channels, cfg.expanded_channels, 1,
                                             norm_layer=V3_NORM, activation_layer=activation))
        layers.append(ConvNormActivation(cfg.expanded_channels, cfg.expanded_channels, cfg.kernel, cfg.stride,
                                         groups=cfg.expanded_channels, norm_layer=V3_NORM,
                                         activation_layer=activation))
        if cfg.use_se:
            layers.append(SqueezeExcitation(cfg.expanded_channels, make_divisible(cfg.expanded_channels // 4)))
        layers.append(ConvNormActivation(cfg.expanded_channels, cfg.out_channels, 1,
                                         norm_layer=V3_NORM, activation_layer=None))
        self.block = nn.Sequential(*layers)
        self.out_channels = cfg.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return x + self.block(x)
        return self.block(x)


class MobileNetV3(nn.Module):
    """MobileNetV3 from a bneck table; the efficient last stage pools before the 1x1 head (as a Linear)."""

    def __init__(
        self,
        setting: tuple[BneckRow, ...],
        head_channels: int,
        num_classes: int = 1000,
        width_mult: float = 1.0,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        configs = [BlockConfig.from_row(row, width_mult) for row in setting]
        stem = configs[0].input_channels
        layers: list[nn.Module] = [ConvNormActivation(3, stem, 3, stride=2, norm_layer=V3_NORM,
                                                      activation_layer=nn.Hardswish)]
        layers += [InvertedResidualV3(cfg) for cfg in configs]
        last_conv = 6 * configs[-1].out_channels
        layers.append(ConvNormActivation(configs[-1].out_channels, last_conv, 1, norm_layer=V3_NORM,
                                         activation_layer=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.last_channel = make_divisible(head_channels * width_mult)
        self.classifier = nn.Sequential(
            nn.Linear(last_conv, self.last_channel),
            nn.Hardswish(inplace=True),
            nn.Dropout(p=dropout, inplace=True),
            nn.Linear(self.last_channel, num_classes),
        )
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def mobilenet_v3_large(num_classes: int = 1000, width_mult: float = 1.0) -> MobileNetV3:
    """MobileNetV3-Large, Table 1 of the paper."""
    return MobileNetV3(V3_LARGE, V3_LARGE_HEAD, num_classes, width_mult)


def mobilenet_v3_small(num_classes: int = 1000, width_mult: float = 1.0) -> MobileNetV3:
    """MobileNetV3-Small, Table 2 of the paper."""
    return MobileNetV3(V3_SMALL, V3_SMALL_HEAD, num_classes, width_mult)
