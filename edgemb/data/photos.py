"""Natural-photo calibration and evaluation crops (`photos:calib`, `photos:eval`) built offline and reproducibly.

ImageNet-pretrained models need natural images: the Fashion-MNIST reference data forgives any quantization.
The recipe (edgemb/data/photos.toml, linked from calibration/) lists Debian opencv-doc photographs grouped by
scene, each group in exactly one split, so calibration never sees a photo (or a view of a scene) that
evaluation is scored on.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from edgemb.data.preprocess import Preprocessing, to_pixels
from edgemb.errors import EdgembError
from edgemb.progress import progress

RECIPE = Path(__file__).with_name("photos.toml")
SPLITS = ("calib", "eval")


@dataclass(frozen=True)
class PhotoSplit:
    """One split of the recipe: its scene groups (paths relative to the root) and crops per group."""

    name: str
    number: int
    crops_per_group: int
    groups: tuple[tuple[str, ...], ...]

    @property
    def size(self) -> int:
        """Crops the split yields in all."""
        return self.crops_per_group * len(self.groups)

    @property
    def photos(self) -> tuple[str, ...]:
        """Every source photo of the split, in recipe order."""
        return tuple(p for group in self.groups for p in group)


@dataclass(frozen=True)
class PhotoRecipe:
    """The parsed recipe: where the photos live, the seed, and the two disjoint splits."""

    root: Path
    package: str
    seed: int
    min_side: float
    splits: dict[str, PhotoSplit]


@cache
def load_recipe(path: Path = RECIPE) -> PhotoRecipe:
    """Read photos.toml ($EDGEMB_PHOTOS_ROOT overrides where the photos are) and check the splits are disjoint."""
    data = tomllib.loads(path.read_text())
    splits = {name: PhotoSplit(name, int(data[name]["number"]), int(data[name]["crops_per_group"]),
                               tuple(tuple(g) for g in data[name]["groups"])) for name in SPLITS}
    shared = set(splits["calib"].photos) & set(splits["eval"].photos)
    if shared:
        raise EdgembError(f"{path}: photo(s) {sorted(shared)} are in both calib and eval; fix the recipe")
    root = Path(os.environ.get("EDGEMB_PHOTOS_ROOT", data["root"]))
    return PhotoRecipe(root, data["package"], int(data["seed"]), float(data["min_side"]), splits)


def split_of(name: str) -> PhotoSplit:
    """The named split, or an error listing the valid ones."""
    recipe = load_recipe()
    if name not in recipe.splits:
        raise EdgembError(f"photos split {name!r} does not exist: use photos:calib or photos:eval")
    return recipe.splits[name]


def _open(path: Path, package: str) -> Image.Image:
    if not path.is_file():
        raise EdgembError(f"photo {path} is missing: run `make setup` or `sudo apt-get install {package}` "
                          "(or set EDGEMB_PHOTOS_ROOT to a copy of its examples folder)")
    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except (UnidentifiedImageError, OSError) as exc:
        raise EdgembError(f"photo {path} is unreadable ({exc}); reinstall {package}") from exc


def crop_box(size: tuple[int, int], rng: np.random.Generator, min_side: float) -> tuple[int, int, int, int]:
    """A random square inside an image of `size`, its side between min_side and 1 of the shorter side."""
    width, height = size
    side = max(1, round(min(width, height) * rng.uniform(min_side, 1.0)))
    left = int(rng.integers(0, width - side + 1))
    top = int(rng.integers(0, height - side + 1))
    return left, top, left + side, top + side


def photo_crops(split: str, pp: Preprocessing, indices: np.ndarray | None = None) -> np.ndarray:
    """uint8 NHWC crops of a split at the model's preprocessing; `indices` picks crops (default: all)."""
    recipe = load_recipe()
    part = split_of(split)
    wanted = np.arange(part.size) if indices is None else np.asarray(indices)
    images: dict[str, Image.Image] = {}
    pixels = []
    for i in progress(wanted, desc=f"photos:{split}", unit="crop"):
        group = part.groups[int(i) % len(part.groups)]
        name = group[(int(i) // len(part.groups)) % len(group)]
        if name not in images:
            images[name] = _open(recipe.root / name, recipe.package)
        rng = np.random.default_rng([recipe.seed, part.number, int(i)])
        crop = images[name].crop(crop_box(images[name].size, rng, recipe.min_side))
        if int(i) % 2:
            crop = ImageOps.mirror(crop)
        pixels.append(to_pixels(crop, pp))
    return np.stack(pixels) if pixels else np.zeros((0, pp.resolution, pp.resolution, 3), np.uint8)


def provenance(split: str) -> dict[str, object]:
    """What a report records about a photos split: package, seed, crop count and the source photos."""
    recipe = load_recipe()
    part = split_of(split)
    return {"package": recipe.package, "root": str(recipe.root), "seed": recipe.seed, "crops": part.size,
            "groups": len(part.groups), "photos": list(part.photos)}
