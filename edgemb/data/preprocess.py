"""Image preprocessing owned by a model's weights: one function feeds calibration, evaluation and every backend.

Two steps so training can cache the expensive part: `to_pixels` (decode-independent resize, crop and colour
conversion to uint8 HxWx3) and `normalize` (uint8 NHWC batch -> float32 NCHW with mean/std).
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
COLOR_MODES = ("rgb", "gray3")


@dataclass(frozen=True)
class Preprocessing:
    """Resize the shorter side to `resize`, center-crop `resolution`, convert colour, scale to [0,1], mean/std.

    `color="gray3"` turns any image to grayscale and repeats it on 3 channels (models trained on grayscale
    data); `color="rgb"` turns grayscale/RGBA/palette images into RGB.
    """

    resolution: int = 224
    resize: int = 256
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    color: str = "rgb"

    def __post_init__(self) -> None:
        if self.color not in COLOR_MODES:
            raise ValueError(f"color must be one of {COLOR_MODES}, got {self.color!r}")
        if self.resize < self.resolution:
            raise ValueError(f"resize {self.resize} is smaller than the crop {self.resolution}")

    def at_resolution(self, resolution: int) -> Preprocessing:
        """The same recipe for another input size, keeping the resize/crop ratio."""
        resize = round(self.resize * resolution / self.resolution)
        return Preprocessing(resolution, resize, self.mean, self.std, self.color)

    def to_dict(self) -> dict:
        """JSON-friendly form for manifests and reports."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> Preprocessing:
        """Inverse of to_dict (lists become tuples)."""
        return cls(int(data["resolution"]), int(data["resize"]), tuple(data["mean"]), tuple(data["std"]),
                   data.get("color", "rgb"))


def read_preprocessing_toml(path: Path) -> Preprocessing:
    """A user's stated preprocessing (e.g. TF-style [-1, 1]: mean = std = [0.5, 0.5, 0.5]) from a small TOML.

    Keys: resolution, resize (shorter side before the centre crop), mean, std (3 numbers each, on [0, 1]
    pixels) and color (rgb or gray3); missing keys keep the ImageNet defaults.
    """
    from edgemb.errors import EdgembError

    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise EdgembError(f"{path} is not a readable TOML file ({exc})") from exc
    known = {f.name for f in fields(Preprocessing)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise EdgembError(f"{path}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}")
    base = Preprocessing()
    try:
        resolution = int(data.get("resolution", base.resolution))
        resize = int(data.get("resize", round(base.resize * resolution / base.resolution)))
        mean, std = (tuple(float(v) for v in data.get(key, getattr(base, key))) for key in ("mean", "std"))
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0 or resolution < 1:
            raise ValueError("mean and std need 3 numbers each, std > 0, resolution >= 1")
        return Preprocessing(resolution, resize, mean, std, str(data.get("color", base.color)))
    except (TypeError, ValueError) as exc:
        raise EdgembError(f"{path}: {exc}") from exc


def _to_pil(image: np.ndarray | Image.Image) -> Image.Image:
    """Accept PIL images and uint8/uint16/float arrays (HxW, HxWx1, HxWx3, HxWx4)."""
    if isinstance(image, Image.Image):
        if image.mode in ("I;16", "I;16B", "I;16L", "I"):
            return _to_pil(np.asarray(image))
        return image
    array = np.asarray(image)
    if array.dtype == np.uint16 or (array.dtype.kind in "iu" and array.max(initial=0) > 255):
        array = (array.astype(np.float64) / 65535.0 * 255.0 + 0.5).astype(np.uint8)
    elif array.dtype.kind == "f":
        array = (np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    else:
        array = array.astype(np.uint8)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    return Image.fromarray(array)


def to_pixels(image: np.ndarray | Image.Image, pp: Preprocessing) -> np.ndarray:
    """One image -> uint8 HxWx3 at pp.resolution (resize shorter side, center crop, colour mode)."""
    pil = _to_pil(image)
    if pil.mode in ("RGBA", "LA", "P", "PA"):
        pil = pil.convert("RGBA")
        background = Image.new("RGBA", pil.size, (255, 255, 255, 255))
        pil = Image.alpha_composite(background, pil)
    pil = pil.convert("L").convert("RGB") if pp.color == "gray3" else pil.convert("RGB")
    width, height = pil.size
    scale = pp.resize / min(width, height)
    new_size = (max(pp.resolution, round(width * scale)), max(pp.resolution, round(height * scale)))
    if new_size != pil.size:
        pil = pil.resize(new_size, Image.Resampling.BILINEAR)
    left = (new_size[0] - pp.resolution) // 2
    top = (new_size[1] - pp.resolution) // 2
    pil = pil.crop((left, top, left + pp.resolution, top + pp.resolution))
    return np.asarray(pil, dtype=np.uint8)


def normalize(pixels: np.ndarray, pp: Preprocessing) -> np.ndarray:
    """uint8 NHWC batch -> float32 NCHW scaled to [0,1] then standardised with the weights' mean/std."""
    batch = pixels.astype(np.float32) / np.float32(255.0)
    batch = (batch - np.asarray(pp.mean, np.float32)) / np.asarray(pp.std, np.float32)
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))


def preprocess(images: Sequence[np.ndarray | Image.Image], pp: Preprocessing) -> np.ndarray:
    """Images of any size/colour -> the float32 NCHW batch the model expects."""
    if len(images) == 0:
        return np.zeros((0, 3, pp.resolution, pp.resolution), np.float32)
    return normalize(np.stack([to_pixels(image, pp) for image in images]), pp)
