"""Synthetic detection/segmentation data with exact ground truth, offline: `synthdet:train[:N]`, `synthdet:test[:N]`.

Fashion-MNIST items, tinted and scaled, are pasted onto crops of natural photos (the opencv-doc photos of
edgemb/data/photos.toml). An item's pixel mask is its thresholded glyph, so boxes (tight around the visible
mask) and per-pixel class masks are exact. The train split draws items from Fashion-MNIST train and
backgrounds from the `calib` photos; the test split from Fashion-MNIST test and the `eval` photos: no item
image and no background photo is shared. Image i of a split is generated from numpy's default_rng([seed,
split number, i]) with every size drawn as a fraction of the image, so the same scene comes out at any
resolution and the same recipe always gives the same pixels.

Classes (label 0 is background) merge Fashion-MNIST's look-alike tops so that a small detector trained on two
CPU cores can be good enough for parity to mean something.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image

from edgemb.data.boxes import box_iou
from edgemb.data.fashion_mnist import read_split
from edgemb.data.preprocess import Preprocessing, to_pixels
from edgemb.data.spec import choose, parse_spec
from edgemb.errors import EdgembError
from edgemb.progress import progress

KIND = "synthdet"
CLASSES = ("background", "top", "trouser", "dress", "footwear", "bag")
# Fashion-MNIST label -> synthetic class: T-shirt, pullover, coat, shirt are "top"; sandal, sneaker, boot "footwear".
FASHION_TO_CLASS = (1, 2, 1, 3, 1, 4, 1, 4, 5, 4)
SPLITS = {"train": (1, "train", "calib", 8000), "test": (2, "test", "eval", 500)}  # number, items, photos, size
SEED = 0
MAX_ITEMS = 3
ITEM_SCALE = (0.22, 0.5)  # item side as a fraction of the image side
MASK_THRESHOLD = 40  # glyph pixels above this (0..255) belong to the item
MAX_OVERLAP = 0.15  # IoU above which a new item is placed elsewhere
MIN_VISIBLE = 0.5  # an item hidden by later ones below this fraction of its mask is dropped from the truth


@dataclass
class SynthSet:
    """Images and their exact truth: uint8 NHWC pixels, per-image boxes (K, 4) xyxy and labels, class masks."""

    pixels: np.ndarray
    boxes: list[np.ndarray]
    labels: list[np.ndarray]
    masks: np.ndarray
    source: str

    def __len__(self) -> int:
        return len(self.pixels)


def split_size(split: str) -> int:
    """How many images a split holds."""
    return _split(split)[3]


def _split(split: str) -> tuple[int, str, str, int]:
    if split not in SPLITS:
        raise EdgembError(f"synthetic split {split!r} does not exist: use {KIND}:train or {KIND}:test")
    return SPLITS[split]


@cache
def _items(fashion_split: str) -> tuple[np.ndarray, np.ndarray]:
    return read_split(fashion_split)


@cache
def _backgrounds(photo_split: str) -> tuple[Image.Image, ...]:
    from edgemb.data.photos import _open, load_recipe, split_of

    recipe = load_recipe()
    return tuple(_open(recipe.root / name, recipe.package).convert("RGB") for name in split_of(photo_split).photos)


def _background(photos: tuple[Image.Image, ...], rng: np.random.Generator, size: int) -> np.ndarray:
    photo = photos[int(rng.integers(len(photos)))]
    width, height = photo.size
    side = min(width, height) * rng.uniform(0.4, 1.0)
    left, top = rng.uniform(0, width - side), rng.uniform(0, height - side)
    crop = photo.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + side, top + side))
    return np.asarray(crop, np.uint8).copy()


def render(split: str, index: int, resolution: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Image `index` of a split at `resolution`: pixels (R, R, 3), boxes (K, 4), labels (K,), class mask (R, R)."""
    number, fashion_split, photo_split, size = _split(split)
    if not 0 <= index < size:
        raise EdgembError(f"{KIND}:{split} has {size} images; index {index} is out of range")
    rng = np.random.default_rng([SEED, number, index])
    items, fashion_labels = _items(fashion_split)
    image = _background(_backgrounds(photo_split), rng, resolution)
    instance = np.zeros((resolution, resolution), np.int32)  # which placed item owns each pixel (0: none)
    placed: list[tuple[np.ndarray, int, int]] = []  # (box in [0, 1], class, mask pixel count)
    for _ in range(int(rng.integers(1, MAX_ITEMS + 1))):
        item = int(rng.integers(len(items)))
        side = rng.uniform(*ITEM_SCALE)
        for _attempt in range(10):
            x0, y0 = rng.uniform(0, 1 - side, size=2)
            box = np.array([x0, y0, x0 + side, y0 + side])
            if not placed or _iou_max(box, [p[0] for p in placed]) <= MAX_OVERLAP:
                break
        colour = rng.uniform(0.25, 1.0, size=3)
        px0, py0 = round(x0 * resolution), round(y0 * resolution)
        px1, py1 = round((x0 + side) * resolution), round((y0 + side) * resolution)
        glyph = np.asarray(Image.fromarray(items[item]).resize((px1 - px0, py1 - py0), Image.Resampling.BILINEAR))
        mask = glyph > MASK_THRESHOLD
        region = image[py0:py1, px0:px1]
        shade = (glyph[..., None].astype(np.float32) / 255.0) * colour * 255.0
        region[mask] = np.clip(shade[mask], 0, 255).astype(np.uint8)
        instance[py0:py1, px0:px1][mask] = len(placed) + 1
        placed.append((box, FASHION_TO_CLASS[int(fashion_labels[item])], int(mask.sum())))
    boxes, labels = [], []
    classes = np.zeros((resolution, resolution), np.uint8)
    for k, (_box, label, area) in enumerate(placed, start=1):
        ys, xs = np.nonzero(instance == k)
        if area == 0 or len(ys) < MIN_VISIBLE * area:
            continue
        classes[instance == k] = label
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        labels.append(label)
    return (image, np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(labels, np.int64), classes)


def _iou_max(box: np.ndarray, others: list[np.ndarray]) -> float:
    return float(box_iou(box[None], np.stack(others)).max())


def load_synthetic(split: str, pp: Preprocessing, indices: np.ndarray | None = None) -> SynthSet:
    """Render a split (or the chosen indices) at the model's resolution, colour mode applied to the pixels."""
    chosen = np.arange(split_size(split)) if indices is None else np.asarray(indices)
    pixels, boxes, labels, masks = [], [], [], []
    for i in progress(chosen, desc=f"{KIND}:{split}", unit="img"):
        image, box, label, mask = render(split, int(i), pp.resolution)
        pixels.append(to_pixels(image, pp) if pp.color != "rgb" else image)
        boxes.append(box)
        labels.append(label)
        masks.append(mask)
    empty = np.zeros((0, pp.resolution, pp.resolution), np.uint8)
    return SynthSet(np.stack(pixels) if pixels else empty[..., None].repeat(3, -1), boxes, labels,
                    np.stack(masks) if masks else empty, f"{KIND}:{split}")


def load_spec(text: str, pp: Preprocessing, seed: int = 0) -> SynthSet:
    """The images and truth of a `synthdet:SPLIT[:N]` spec (N picks the same seeded subset as every data spec)."""
    spec = parse_spec(text)
    if spec.kind != KIND:
        raise EdgembError(f"{text!r} is not a {KIND}: spec; ground truth exists only for {KIND}:train/test")
    index = choose(split_size(spec.location), spec.count, spec, seed)
    data = load_synthetic(spec.location, pp, index)
    data.source = text
    return data
