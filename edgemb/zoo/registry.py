"""Model names such as `v2_1.0@160` mapped to builders; the one place a name is parsed and checked."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass, replace

from torch import nn

from edgemb.errors import EdgembError
from edgemb.zoo.mobilenet_v1 import MobileNetV1
from edgemb.zoo.mobilenet_v2 import MobileNetV2
from edgemb.zoo.mobilenet_v3 import mobilenet_v3_large, mobilenet_v3_small

DEFAULT_RESOLUTION = 224
RESOLUTION_STEP = 32


@dataclass(frozen=True)
class Family:
    """What a model family is called, which widths exist, how to build one and where its head lives."""

    key: str
    title: str
    alphas: tuple[float, ...]
    builder: Callable[[int, float], nn.Module]
    head_weight_key: str
    torchvision_builder: str | None


FAMILIES: dict[str, Family] = {
    f.key: f
    for f in (
        Family("v1", "MobileNetV1", (0.25, 0.5, 0.75, 1.0),
               lambda n, a: MobileNetV1(n, a), "classifier.1.weight", None),
        Family("v2", "MobileNetV2", (0.35, 0.5, 0.75, 1.0, 1.3, 1.4),
               lambda n, a: MobileNetV2(n, a), "classifier.1.weight", "mobilenet_v2"),
        Family("v3l", "MobileNetV3-Large", (0.75, 1.0),
               lambda n, a: mobilenet_v3_large(n, a), "classifier.3.weight", "mobilenet_v3_large"),
        Family("v3s", "MobileNetV3-Small", (0.75, 1.0),
               lambda n, a: mobilenet_v3_small(n, a), "classifier.3.weight", "mobilenet_v3_small"),
    )
}

_NAME = re.compile(r"^(?P<family>[a-z0-9]+)_(?P<alpha>\d+(?:\.\d+)?)(?:@(?P<res>\S+))?$")


@dataclass(frozen=True)
class ModelSpec:
    """A fully resolved zoo entry: family, width multiplier and input resolution."""

    family: str
    alpha: float
    resolution: int = DEFAULT_RESOLUTION
    resolution_given: bool = False

    @property
    def base_name(self) -> str:
        """The name without resolution, e.g. `v2_1.0`: what checkpoints are keyed by."""
        return f"{self.family}_{self.alpha}"

    @property
    def name(self) -> str:
        """Canonical name; the resolution suffix appears only when it is not the default 224."""
        if self.resolution == DEFAULT_RESOLUTION:
            return self.base_name
        return f"{self.base_name}@{self.resolution}"

    @property
    def info(self) -> Family:
        """The family record (builder, widths, head key)."""
        return FAMILIES[self.family]

    def with_resolution(self, resolution: int) -> ModelSpec:
        """Same model at another input resolution (used when weights carry their own resolution)."""
        check_resolution(resolution, self.base_name)
        return replace(self, resolution=resolution)

    def build(self, num_classes: int = 1000) -> nn.Module:
        """A freshly initialised model in eval mode."""
        if num_classes < 1:
            raise EdgembError(f"num_classes must be >= 1, got {num_classes}")
        return self.info.builder(num_classes, self.alpha).eval()


def all_names() -> list[str]:
    """Every zoo entry at the default resolution, in family order."""
    return [f"{key}_{alpha}" for key, fam in FAMILIES.items() for alpha in fam.alphas]


def check_resolution(resolution: int, name: str) -> None:
    """Refuse resolutions the stride-32 networks cannot take cleanly."""
    if resolution < RESOLUTION_STEP or resolution % RESOLUTION_STEP:
        raise EdgembError(
            f"resolution {resolution} for {name} is not a multiple of {RESOLUTION_STEP} >= {RESOLUTION_STEP}: "
            "use 128, 160, 192, 224 or another multiple of 32"
        )


def parse_model_name(name: str) -> ModelSpec:
    """Turn `v3s_0.75@160` into a ModelSpec, or raise an EdgembError naming the closest valid names."""
    match = _NAME.match(name.strip().lower())
    family = FAMILIES.get(match["family"]) if match else None
    alpha = float(match["alpha"]) if match else None
    if family is None or alpha not in family.alphas:
        close = difflib.get_close_matches(name.split("@")[0], all_names(), n=4, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise EdgembError(f"unknown model {name!r}: {hint}run `edgemb models` to list all")
    res_text = match["res"]
    if res_text is None:
        return ModelSpec(family.key, alpha)
    if not res_text.isdigit():
        example = f"{name.split('@')[0]}@160"
        raise EdgembError(f"resolution {res_text!r} in {name!r} is not a whole number of pixels, e.g. {example}")
    resolution = int(res_text)
    check_resolution(resolution, name)
    return ModelSpec(family.key, alpha, resolution, resolution_given=True)


def build_model(name: str, num_classes: int = 1000) -> nn.Module:
    """Build a zoo model by name with fresh weights."""
    return parse_model_name(name).build(num_classes)
