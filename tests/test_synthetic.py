"""The synthetic detection/segmentation set: exact, reproducible truth from disjoint sources."""

from __future__ import annotations

import numpy as np
import pytest

from edgemb.data import Preprocessing, load_data
from edgemb.data.photos import split_of
from edgemb.data.synthetic import CLASSES, SPLITS, load_spec, render
from edgemb.errors import EdgembError


def test_same_index_same_pixels_and_truth():
    first, second = render("test", 7, 96), render("test", 7, 96)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(render("test", 8, 96)[0], first[0])


def test_boxes_are_tight_around_the_mask_of_their_class():
    for index in range(20):
        image, boxes, labels, mask = render("train", index, 128)
        assert image.shape == (128, 128, 3) and mask.shape == (128, 128)
        assert len(boxes) >= 1 and set(labels.tolist()) <= set(range(1, len(CLASSES)))
        assert set(np.unique(mask).tolist()) <= {0, *labels.tolist()}
        for box, label in zip(boxes.astype(int), labels, strict=True):
            inside = mask[box[1]:box[3], box[0]:box[2]] == label
            # every edge row/column of the box touches the object: the box is tight
            assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()


def test_scene_is_the_same_at_any_resolution():
    _, small, labels_small, _ = render("test", 3, 128)
    _, large, labels_large, _ = render("test", 3, 256)
    assert labels_small.tolist() == labels_large.tolist()
    np.testing.assert_allclose(small * 2, large, atol=4)  # rounding and glyph edges move a box by a few pixels


def test_train_and_test_share_no_background_photo():
    train_photos, test_photos = (set(split_of(SPLITS[s][2]).photos) for s in ("train", "test"))
    assert train_photos and test_photos and not train_photos & test_photos


def test_data_spec_gives_images_and_truth_for_the_same_subset():
    pp = Preprocessing(64, 64, (0.5,) * 3, (0.5,) * 3)
    data = load_data("synthdet:test:12", pp)
    truth = load_spec("synthdet:test:12", pp)
    assert data.x.shape == (12, 3, 64, 64) and len(truth) == 12 and data.classes == CLASSES
    np.testing.assert_allclose(data.x, (truth.pixels.transpose(0, 3, 1, 2) / 255.0 - 0.5) / 0.5, atol=1e-6)
    with pytest.raises(EdgembError, match="synthdet:train or synthdet:test"):
        load_spec("synthdet:val", pp)
