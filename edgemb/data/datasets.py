"""Calibration and evaluation data from a spec string: Fashion-MNIST, image folders, or preprocessed arrays.

Spec grammar (see calibration/README.md):
    fashion-mnist:SPLIT[:N]         SPLIT is train (60,000) or test (10,000); IDX files from Debian's package
    imagefolder:PATH[:N]            JPEG/PNG found recursively; class sub-folders give labels
    npy:X.npy[+Y.npy][:N]           float32 NCHW, already preprocessed; optional int labels
    npz:FILE.npz[:N]                arrays `x` (float32 NCHW) and optional `y`
    photos:calib[:N], photos:eval[:N]  seeded crops of natural photos (opencv-doc), disjoint source photos
    synthdet:train[:N], synthdet:test[:N]  Fashion-MNIST items on those photos, exact boxes and masks
N picks a seeded random subset (same N and seed -> same samples, in file order).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from edgemb.data import synthetic
from edgemb.data.fashion_mnist import FASHION_MNIST_CLASSES, FASHION_MNIST_FILES, read_split
from edgemb.data.preprocess import Preprocessing, normalize, to_pixels
from edgemb.data.spec import DEFAULT_SEED, DataSpec, choose, parse_spec
from edgemb.errors import EdgembError
from edgemb.progress import progress

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


@dataclass
class Data:
    """Preprocessed samples ready for any backend: float32 NCHW `x`, optional int64 `y`."""

    x: np.ndarray
    y: np.ndarray | None
    source: str
    classes: tuple[str, ...] | None = None
    skipped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass
class Pixels:
    """Samples resized and colour-converted but not yet normalised: uint8 NHWC (what training caches)."""

    pixels: np.ndarray
    y: np.ndarray | None
    source: str
    classes: tuple[str, ...] | None = None
    skipped: list[str] = field(default_factory=list)


def _fashion_mnist(spec: DataSpec, pp: Preprocessing, seed: int) -> Pixels:
    split = spec.location
    if split not in FASHION_MNIST_FILES:
        raise EdgembError(f"Fashion-MNIST split {split!r} in {spec.text!r} must be train or test")
    images, labels = read_split(split)
    index = choose(len(images), spec.count, spec, seed)
    pixels = np.stack([to_pixels(images[i], pp) for i in progress(index, desc=f"read {spec.text}", unit="img")])
    return Pixels(pixels, labels[index].astype(np.int64), spec.text, FASHION_MNIST_CLASSES)


def _image_folder(spec: DataSpec, pp: Preprocessing, seed: int) -> Pixels:
    root = Path(spec.location).expanduser()
    if not root.is_dir():
        raise EdgembError(f"image folder {root} does not exist or is not a folder")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise EdgembError(f"image folder {root} holds no .jpg/.jpeg/.png files")
    class_names = sorted({p.relative_to(root).parts[0] for p in files if len(p.relative_to(root).parts) > 1})
    labelled = bool(class_names) and all(len(p.relative_to(root).parts) > 1 for p in files)
    files = [files[i] for i in choose(len(files), spec.count, spec, seed)]
    pixels, labels, skipped = [], [], []
    for path in progress(files, desc=f"read {root.name}", unit="img"):
        try:
            with Image.open(path) as image:
                image.load()
                pixels.append(to_pixels(image, pp))
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
            skipped.append(str(path))
            continue
        if labelled:
            labels.append(class_names.index(path.relative_to(root).parts[0]))
    if skipped:
        warnings.warn(f"skipped {len(skipped)} unreadable image(s) in {root}, e.g. {skipped[0]}", stacklevel=2)
    if not pixels:
        raise EdgembError(f"none of the {len(files)} image(s) in {root} could be read (all corrupt?)")
    y = np.asarray(labels, np.int64) if labelled else None
    return Pixels(np.stack(pixels), y, spec.text, tuple(class_names) if labelled else None, skipped)


def _photos(spec: DataSpec, pp: Preprocessing, seed: int) -> Pixels:
    from edgemb.data.photos import photo_crops, split_of

    index = choose(split_of(spec.location).size, spec.count, spec, seed)
    return Pixels(photo_crops(spec.location, pp, index), None, spec.text)


def _arrays(spec: DataSpec, pp: Preprocessing, seed: int) -> Data:
    if spec.kind == "npz":
        path = Path(spec.location).expanduser()
        try:
            archive = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise EdgembError(f"{path} is not a readable .npz file ({exc})") from exc
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise EdgembError(f"{path} holds one .npy array, not an .npz archive of x (and y): use npy:{path}[+Y.npy], "
                              "or save both with numpy.savez(FILE, x=..., y=...)")
        with archive:
            if "x" not in archive:
                raise EdgembError(f"{path} has no array named 'x' (found {', '.join(archive.files)})")
            x = archive["x"]
            y = archive.get("y", None)
    else:
        x_path, _, y_path = spec.location.partition("+")
        x = _load_npy(Path(x_path).expanduser())
        y = _load_npy(Path(y_path).expanduser()) if y_path else None
    expected = (3, pp.resolution, pp.resolution)
    if x.dtype != np.float32 or x.ndim != 4 or tuple(x.shape[1:]) != expected:
        raise EdgembError(
            f"{spec.text}: array of shape {x.shape} and dtype {x.dtype} must be float32 "
            f"(N, {', '.join(map(str, expected))}) preprocessed for this model"
        )
    if y is not None:
        if y.ndim != 1 or len(y) != len(x) or y.dtype.kind not in "iu":
            raise EdgembError(f"{spec.text}: labels must be {len(x)} integers, got shape {y.shape} dtype {y.dtype}")
        if len(y) and y.min() < 0:
            raise EdgembError(f"{spec.text}: label {int(y.min())} at sample {int(np.argmin(y))} is negative: labels "
                              "are class indices 0..C-1")
        y = y.astype(np.int64)
    index = choose(len(x), spec.count, spec, seed)
    return Data(np.ascontiguousarray(x[index]), None if y is None else y[index], spec.text)


def _load_npy(path: Path) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise EdgembError(f"{path} is not a readable .npy file ({exc})") from exc
    if not isinstance(array, np.ndarray):
        array.close()
        raise EdgembError(f"{path} is an .npz archive, not one .npy array: use npz:{path}")
    return array


def check_finite(x: np.ndarray, source: str) -> None:
    """NaN or inf in inputs would poison calibration ranges and accuracy: name the first bad sample."""
    bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
    if bad.any():
        raise EdgembError(f"{source}: sample {int(np.argmax(bad))} contains NaN or inf ({int(bad.sum())} bad in all)")


def load_pixels(text: str, pp: Preprocessing, seed: int = DEFAULT_SEED) -> Pixels:
    """Resized uint8 samples of an image source (not available for already-preprocessed arrays)."""
    spec = parse_spec(text)
    if spec.kind == "fashion-mnist":
        return _fashion_mnist(spec, pp, seed)
    if spec.kind == "imagefolder":
        return _image_folder(spec, pp, seed)
    if spec.kind == "photos":
        return _photos(spec, pp, seed)
    if spec.kind == synthetic.KIND:  # detection/segmentation images; their truth: synthetic.load_spec
        return Pixels(synthetic.load_spec(text, pp, seed).pixels, None, text, synthetic.CLASSES)
    raise EdgembError(f"{text} holds preprocessed arrays, not images")


def as_data(source: str | Data | None, pp: Preprocessing) -> Data | None:
    """A data spec read with the model's preprocessing; data a caller (a deploy) already loaded passes through."""
    if source is None or isinstance(source, Data):
        return source
    return load_data(source, pp)


def load_data(text: str, pp: Preprocessing, seed: int = DEFAULT_SEED) -> Data:
    """Read a data spec and preprocess it exactly as the model's weights require."""
    spec = parse_spec(text)
    if spec.kind in ("npy", "npz"):
        data = _arrays(spec, pp, seed)
    else:
        raw = load_pixels(text, pp, seed)
        data = Data(normalize(raw.pixels, pp), raw.y, raw.source, raw.classes, raw.skipped)
    check_finite(data.x, text)
    return data
