"""Fashion-MNIST as Debian's dataset-fashion-mnist installs it: gzipped IDX files of 28x28 uint8 images.

Read by the `fashion-mnist:` data spec (edgemb.data.datasets) and by the synthetic scenes, which paste its
items onto photos (edgemb.data.synthetic).
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np

from edgemb.errors import EdgembError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot")
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def fashion_mnist_dir() -> Path:
    """Where Debian's dataset-fashion-mnist put the IDX files ($EDGEMB_FASHION_MNIST overrides)."""
    return Path(os.environ.get("EDGEMB_FASHION_MNIST", FASHION_MNIST_DIR))


def read_idx(path: Path) -> np.ndarray:
    """Read a (gzipped) IDX file: unsigned-byte images (N, rows, cols) or labels (N,)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as exc:
        raise EdgembError(f"{path} is not a readable IDX file ({exc}); reinstall dataset-fashion-mnist") from exc
    if len(data) < 8:
        raise EdgembError(f"{path} is too short to be an IDX file")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise EdgembError(f"{path} is not an unsigned-byte IDX file (magic {data[:4].hex()})")
    shape = struct.unpack(f">{ndim}I", data[4: 4 + 4 * ndim])
    body = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise EdgembError(f"{path} holds {body.size} bytes but its header says {shape}: the file is truncated")
    return body.reshape(shape)


def read_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """All images (N, 28, 28) and labels (N,) of the train or test split, checked against each other."""
    image_file, label_file = (fashion_mnist_dir() / name for name in FASHION_MNIST_FILES[split])
    if not image_file.exists() or not label_file.exists():
        raise EdgembError(
            f"Fashion-MNIST is not installed ({image_file} missing): run `make setup` or "
            "`sudo apt-get install dataset-fashion-mnist` (or set EDGEMB_FASHION_MNIST to a folder of IDX files)"
        )
    images, labels = read_idx(image_file), read_idx(label_file)
    if len(images) != len(labels):
        raise EdgembError(f"{image_file} has {len(images)} images but {label_file} has {len(labels)} labels")
    return images, labels
