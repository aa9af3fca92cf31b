"""Data readers and preprocessing: real files in, exactly the tensors the model expects out."""

from __future__ import annotations

import gzip
import warnings

import numpy as np
import pytest
from PIL import Image

from edgemb.data import Preprocessing, load_data, load_pixels, parse_spec, preprocess, to_pixels
from edgemb.data.fashion_mnist import FASHION_MNIST_DIR, read_idx
from edgemb.errors import EdgembError

RAW = Preprocessing(28, 28, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "gray3")  # identity on Fashion-MNIST pixels
OPENCV_SAMPLES = "/usr/share/doc/opencv-doc/examples/data"


def test_spec_grammar():
    assert (parse_spec("fashion-mnist:train:512").count, parse_spec("fashion-mnist:test").count) == (512, None)
    spec = parse_spec("imagefolder:/a/b:c:10")
    assert (spec.kind, spec.location, spec.count) == ("imagefolder", "/a/b:c", 10)
    for bad in ["mnist:test", "fashion-mnist", "fashion-mnist:test:0", "npy:"]:
        with pytest.raises(EdgembError):
            parse_spec(bad)


def test_fashion_mnist_test_split_is_complete_and_exact():
    data = load_data("fashion-mnist:test", RAW)
    assert data.x.shape == (10_000, 3, 28, 28) and data.x.dtype == np.float32
    assert np.bincount(data.y).tolist() == [1000] * 10
    raw = read_idx(FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz")
    np.testing.assert_allclose(data.x[:, 0] * 255.0, raw, atol=1e-3)
    assert np.array_equal(data.x[:, 0], data.x[:, 2]), "grayscale is repeated on three channels"


def test_subsets_are_seeded_and_deterministic():
    a = load_data("fashion-mnist:train:64", RAW)
    b = load_data("fashion-mnist:train:64", RAW)
    c = load_data("fashion-mnist:train:64", RAW, seed=1)
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)
    assert not np.array_equal(a.y, c.y)


def test_count_larger_than_dataset_is_an_error():
    with pytest.raises(EdgembError, match="asks for 10001 samples but only 10000"):
        load_data("fashion-mnist:test:10001", RAW)
    with pytest.raises(EdgembError, match="train or test"):
        load_data("fashion-mnist:valid", RAW)


def test_missing_debian_dataset_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEMB_FASHION_MNIST", str(tmp_path))
    with pytest.raises(EdgembError, match="apt-get install dataset-fashion-mnist"):
        load_data("fashion-mnist:test", RAW)


def test_truncated_idx_file_is_an_error(tmp_path, monkeypatch):
    source = FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz"
    data = gzip.decompress(source.read_bytes())
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(data[: len(data) // 2]))
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes((FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz").read_bytes())
    monkeypatch.setenv("EDGEMB_FASHION_MNIST", str(tmp_path))
    with pytest.raises(EdgembError, match="truncated"):
        load_data("fashion-mnist:test", RAW)


@pytest.fixture
def photo_folder(tmp_path):
    """A class-folder tree with every image flavour a user may have, plus one corrupt file."""
    root = tmp_path / "photos"
    (root / "cat").mkdir(parents=True)
    (root / "dog").mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(root / "cat" / "rgb.jpg")
    Image.fromarray(np.full((32, 32), 200, np.uint8), "L").save(root / "cat" / "gray.png")
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:, 16:, 3] = 255  # left half fully transparent (white background), right half opaque red
    Image.fromarray(rgba, "RGBA").save(root / "dog" / "rgba.png")
    Image.fromarray(np.full((32, 32), 32768, np.uint16)).save(root / "dog" / "deep.png")
    (root / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    return root


def test_image_folder_labels_conversions_and_corrupt_files(photo_folder):
    pp = Preprocessing(32, 32, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "rgb")
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        raw = load_pixels(f"imagefolder:{photo_folder}", pp)
    assert raw.classes == ("cat", "dog") and raw.skipped[0].endswith("broken.png")
    by_name = dict(zip(["gray", "rgb", "deep", "rgba"], raw.pixels, strict=True))  # sorted file order
    assert raw.y.tolist() == [0, 0, 1, 1]
    assert (by_name["gray"] == 200).all()
    assert (by_name["deep"] == 128).all(), "16-bit PNG must be scaled to 8 bits, not clipped"
    assert (by_name["rgba"][:, :10] == 255).all() and (by_name["rgba"][:, 22:] == [255, 0, 0]).all()


def test_image_folder_errors(tmp_path):
    with pytest.raises(EdgembError, match="does not exist"):
        load_data(f"imagefolder:{tmp_path / 'nope'}", Preprocessing())
    (tmp_path / "empty").mkdir()
    with pytest.raises(EdgembError, match="holds no"):
        load_data(f"imagefolder:{tmp_path / 'empty'}", Preprocessing())
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.jpg").write_bytes(b"junk")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(EdgembError, match="could be read"):
            load_data(f"imagefolder:{tmp_path / 'bad'}", Preprocessing())


def test_natural_photos_from_opencv_doc():
    data = load_data(f"imagefolder:{OPENCV_SAMPLES}:12", Preprocessing())
    assert data.x.shape == (12, 3, 224, 224) and data.y is None
    assert -2.2 < data.x.min() < 0 < data.x.max() < 2.7  # ImageNet-normalised range


def test_resize_shorter_side_then_center_crop():
    image = np.zeros((200, 300, 3), np.uint8)
    image[:, 150:] = 255  # right half white
    pixels = to_pixels(image, Preprocessing(224, 256))  # 300x200 -> 384x256 -> crop x in [80, 304)
    assert pixels.shape == (224, 224, 3)
    assert (pixels[:, :100] == 0).all() and (pixels[:, 120:] == 255).all()


def test_the_same_function_feeds_every_reader(tmp_path, photo_folder):
    """imagefolder, npy and direct preprocess() give identical tensors for the same image."""
    pp = Preprocessing(64, 73)
    path = photo_folder / "cat" / "rgb.jpg"
    direct = preprocess([Image.open(path)], pp)
    via_folder = load_data(f"imagefolder:{photo_folder / 'cat'}", pp)
    np.save(tmp_path / "x.npy", via_folder.x)
    via_npy = load_data(f"npy:{tmp_path / 'x.npy'}", pp)
    assert np.array_equal(direct[0], via_folder.x[1]) and np.array_equal(via_folder.x, via_npy.x)


def test_npy_shape_dtype_labels_and_nan_checks(tmp_path):
    pp = Preprocessing(32, 32)
    good = np.zeros((4, 3, 32, 32), np.float32)
    np.save(tmp_path / "x.npy", good)
    np.save(tmp_path / "y.npy", np.arange(4))
    data = load_data(f"npy:{tmp_path / 'x.npy'}+{tmp_path / 'y.npy'}:2", pp)
    assert len(data) == 2 and data.y.dtype == np.int64
    np.save(tmp_path / "wrong.npy", good.astype(np.float64))
    with pytest.raises(EdgembError, match="must be float32"):
        load_data(f"npy:{tmp_path / 'wrong.npy'}", pp)
    np.save(tmp_path / "nhwc.npy", good.transpose(0, 2, 3, 1))
    with pytest.raises(EdgembError, match=r"must be float32 \(N, 3, 32, 32\)"):
        load_data(f"npy:{tmp_path / 'nhwc.npy'}", pp)
    np.save(tmp_path / "y3.npy", np.arange(3))
    with pytest.raises(EdgembError, match="labels must be 4 integers"):
        load_data(f"npy:{tmp_path / 'x.npy'}+{tmp_path / 'y3.npy'}", pp)
    bad = good.copy()
    bad[2, 0, 0, 0] = np.nan
    np.savez(tmp_path / "nan.npz", x=bad)
    with pytest.raises(EdgembError, match="sample 2 contains NaN"):
        load_data(f"npz:{tmp_path / 'nan.npz'}", pp)
    with pytest.raises(EdgembError, match="not a readable"):
        load_data(f"npy:{tmp_path / 'absent.npy'}", pp)
