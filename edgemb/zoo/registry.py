"""Model names such as `v2_1.0@160` mapped to builders; the one place a name is parsed and checked."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass, replace

from torch import nn

from edgemb.data.preprocess import Preprocessing
from edgemb.errors import EdgembError
from edgemb.zoo.detection import ssd_v1, ssdlite_v2, ssdlite_v3_large
from edgemb.zoo.mobilenet_v1 import MobileNetV1
from edgemb.zoo.mobilenet_v2 import MobileNetV2
from edgemb.zoo.mobilenet_v3 import mobilenet_v3_large, mobilenet_v3_small
from edgemb.zoo.segmentation import lraspp_v2, lraspp_v3_large

DEFAULT_RESOLUTION = 224
RESOLUTION_STEP = 32
MAX_RESOLUTION = 1024  # twice the largest default here (LR-ASPP, 512); memory grows with the square of it


@dataclass(frozen=True)
class Family:
    """What a model family is called, which widths exist, how to build one and where its head lives.

    Detectors and segmenters say their `task`, default size and class count, and the preprocessing their
    weights expect; `head_divisor` turns the head's output channels into classes (anchors per location).
    """

    key: str
    title: str
    alphas: tuple[float, ...]
    builder: Callable[[int, float], nn.Module]
    head_weight_key: str
    torchvision_builder: str | None
    task: str = "classification"
    default_resolution: int = DEFAULT_RESOLUTION
    default_classes: int = 1000
    preprocessing: Preprocessing | None = None
    head_divisor: int = 1


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
        # Detection and segmentation (edgemb.tasks): no resize-and-crop, the whole image is the input.
        Family("ssdlite_v3l", "SSDLite MobileNetV3-Large", (0.5, 0.75, 1.0), ssdlite_v3_large,
               "head.classification_head.module_list.0.1.weight", "ssdlite320_mobilenet_v3_large",
               "detection", 320, 91, Preprocessing(320, 320, (0.5,) * 3, (0.5,) * 3), 6),
        Family("ssdlite_v2", "SSDLite MobileNetV2", (0.35, 0.5, 0.75, 1.0), ssdlite_v2,
               "head.classification_head.module_list.0.1.weight", None,
               "detection", 320, 91, Preprocessing(320, 320, (0.5,) * 3, (0.5,) * 3), 6),
        Family("ssd_v1", "MobileNet-SSD (V1)", (0.25, 0.5, 0.75, 1.0), ssd_v1,
               "head.classification_head.module_list.0.weight", None,
               "detection", 300, 21, Preprocessing(300, 300, (0.5,) * 3, (0.5,) * 3), 4),
        Family("lraspp_v3l", "LR-ASPP MobileNetV3-Large", (0.5, 0.75, 1.0), lraspp_v3_large,
               "classifier.low_classifier.weight", "lraspp_mobilenet_v3_large",
               "segmentation", 512, 21, Preprocessing(512, 512)),
        Family("lraspp_v2", "LR-ASPP MobileNetV2", (0.35, 0.5, 0.75, 1.0, 1.3, 1.4), lraspp_v2,
               "classifier.low_classifier.weight", None, "segmentation", 512, 21, Preprocessing(512, 512)),
    )
}

_NAME = re.compile(r"^(?P<family>[a-z0-9_]+?)_(?P<alpha>\d+(?:\.\d+)?)(?:@(?P<res>\S+))?$")


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
        """Canonical name; the resolution suffix appears only when it is not the family's default (224)."""
        if self.resolution == self.info.default_resolution:
            return self.base_name
        return f"{self.base_name}@{self.resolution}"

    @property
    def info(self) -> Family:
        """The family record (builder, widths, head key)."""
        return FAMILIES[self.family]

    def with_resolution(self, resolution: int) -> ModelSpec:
        """Same model at another input resolution (used when weights carry their own resolution)."""
        check_resolution(resolution, self.base_name, self.info.default_resolution)
        return replace(self, resolution=resolution)

    def build(self, num_classes: int | None = None) -> nn.Module:
        """A freshly initialised model in eval mode (default class count: 1000, or the task's, e.g. 91 COCO)."""
        num_classes = self.info.default_classes if num_classes is None else num_classes
        if num_classes < 1:
            raise EdgembError(f"num_classes must be >= 1, got {num_classes}")
        return self.info.builder(num_classes, self.alpha).eval()


def all_names(task: str | None = None) -> list[str]:
    """Every zoo entry at the default resolution, in family order (only one task's when `task` is given)."""
    return [f"{key}_{alpha}" for key, fam in FAMILIES.items() for alpha in fam.alphas
            if task is None or fam.task == task]


def check_resolution(resolution: int, name: str, default: int = DEFAULT_RESOLUTION) -> None:
    """Refuse resolutions the stride-32 networks cannot take cleanly (a family's own default is always fine)."""
    if resolution == default:
        return
    if resolution < RESOLUTION_STEP or resolution % RESOLUTION_STEP:
        raise EdgembError(
            f"resolution {resolution} for {name} is not a multiple of {RESOLUTION_STEP} >= {RESOLUTION_STEP}: "
            "use 128, 160, 192, 224 or another multiple of 32"
        )
    if resolution > MAX_RESOLUTION:
        raise EdgembError(f"resolution {resolution} for {name} is above {MAX_RESOLUTION}: activations grow with "
                          f"its square and run out of memory; use 224 or another multiple of 32 up to {MAX_RESOLUTION}")


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
        return ModelSpec(family.key, alpha, family.default_resolution)
    if not res_text.isdigit():
        example = f"{name.split('@')[0]}@160"
        raise EdgembError(f"resolution {res_text!r} in {name!r} is not a whole number of pixels, e.g. {example}")
    resolution = int(res_text)
    check_resolution(resolution, name, family.default_resolution)
    return ModelSpec(family.key, alpha, resolution, resolution_given=True)


def build_model(name: str, num_classes: int | None = None) -> nn.Module:
    """Build a zoo model by name with fresh weights."""
    return parse_model_name(name).build(num_classes)
