"""Host-side detection/segmentation post-processing and metrics against hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from edgemb.tasks import task_for, task_parity, torch_outputs
from edgemb.tasks.detection import (
    Detections,
    DetectionSettings,
    box_iou,
    coco_map,
    decode,
    default_boxes,
    encode,
    grid_sizes,
    match_anchors,
    match_detections,
    nms,
    postprocess,
)
from edgemb.tasks.segmentation import mask_metrics, upsample_bilinear
from edgemb.zoo import parse_model_name
from edgemb.zoo.detection import SSDLITE_ANCHORS


def test_default_boxes_follow_torchvision_layout():
    anchors = default_boxes(SSDLITE_ANCHORS, 320)
    assert grid_sizes(320, 6) == [20, 10, 5, 3, 2, 1] and grid_sizes(300, 6) == [19, 10, 5, 3, 2, 1]
    assert anchors.shape == (3234, 4)  # what the ssdlite320 head predicts
    # first box: centre of cell (0, 0) of the 20x20 map, scale 0.1, clipped in cx/cy/w/h space then to xyxy
    np.testing.assert_allclose(anchors[0], [-8.0, -8.0, 24.0, 24.0], atol=1e-4)
    # the last map is one cell with scale 0.92 and sqrt(0.92 * 1.10) clipped to 1: the whole image
    np.testing.assert_allclose(anchors[-5], [0.0, 0.0, 320.0, 320.0], atol=1e-3)


def test_encode_decode_round_trip():
    anchors = np.array([[10, 10, 50, 50], [0, 0, 100, 60]], np.float32)
    boxes = np.array([[12, 8, 60, 44], [5, 5, 80, 70]], np.float32)
    np.testing.assert_allclose(decode(encode(boxes, anchors), anchors), boxes, atol=1e-4)


def test_box_iou_hand_values():
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10], [3, 3, 3, 3]], np.float32)
    np.testing.assert_allclose(box_iou(a, b)[0], [50 / 150, 0.0, 1.0, 0.0])


def test_nms_drops_the_weaker_of_overlapping_boxes_and_keeps_separate_ones():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.6, 0.9, 0.5])
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]
    assert nms(boxes, scores, 0.9).tolist() == [1, 0, 2]  # IoU 0.82 is below 0.9: both stay


def _logits_for(anchors: int, classes: int, hot: dict[int, int], strength: float = 8.0) -> np.ndarray:
    logits = np.zeros((anchors, classes), np.float32)
    logits[:, 0] = strength  # background everywhere ...
    for anchor, label in hot.items():  # ... except where an object is
        logits[anchor, 0] = 0.0
        logits[anchor, label] = strength
    return logits


def test_postprocess_overlapping_boxes_same_class_merge_other_class_stays():
    anchors = np.array([[0, 0, 40, 40], [2, 0, 42, 40], [0, 0, 40, 40], [60, 60, 100, 100]], np.float32)
    logits = _logits_for(4, 3, {0: 1, 1: 1, 2: 2, 3: 1})
    logits[1, 1] -= 1.0  # the second box of class 1 is less confident
    det = postprocess(logits, np.zeros((4, 4), np.float32), anchors, 128)
    assert sorted(det.labels.tolist()) == [1, 1, 2]
    kept = {tuple(b) for b in det.boxes[det.labels == 1].tolist()}
    assert kept == {(0, 0, 40, 40), (60, 60, 100, 100)}  # the weaker overlapping one was suppressed


def test_postprocess_empty_image_and_all_below_threshold_give_no_boxes():
    anchors = default_boxes(SSDLITE_ANCHORS, 128)
    empty = postprocess(_logits_for(len(anchors), 6, {}), np.zeros((len(anchors), 4)), anchors, 128)
    assert len(empty) == 0 and empty.boxes.shape == (0, 4)
    logits = _logits_for(len(anchors), 6, {10: 3}, strength=1.0)  # softmax peak 0.46 for class 3
    regression = np.zeros((len(anchors), 4), np.float32)
    assert len(postprocess(logits, regression, anchors, 128, DetectionSettings(score_threshold=0.5))) == 0
    assert len(postprocess(logits, regression, anchors, 128, DetectionSettings(score_threshold=0.3))) == 1


def test_boxes_are_clipped_to_the_image():
    anchors = np.array([[-20, -20, 40, 40]], np.float32)
    det = postprocess(_logits_for(1, 2, {0: 1}), np.zeros((1, 4)), anchors, 32)
    np.testing.assert_allclose(det.boxes, [[0, 0, 32, 32]])


def test_match_anchors_gives_every_object_its_best_anchor():
    anchors = np.array([[0, 0, 10, 10], [0, 0, 30, 30], [50, 50, 60, 60]], np.float32)
    labels, boxes = match_anchors(anchors, np.array([[0, 0, 20, 20]], np.float32), np.array([4]))
    assert labels.tolist() == [0, 4, 0]  # IoU 0.25 and 0.44 are below 0.5, but 0.44 is the object's best
    np.testing.assert_allclose(boxes[1], [0, 0, 20, 20])


def test_coco_map_perfect_shifted_and_missing():
    truth_boxes = [np.array([[10, 10, 50, 50]], np.float32), np.array([[0, 0, 20, 40]], np.float32)]
    truth_labels = [np.array([1]), np.array([2])]
    score = np.array([0.9], np.float32)
    perfect = [Detections(b, score, lab) for b, lab in zip(truth_boxes, truth_labels, strict=True)]
    assert coco_map(perfect, truth_boxes, truth_labels, 3) == pytest.approx({"map": 1.0, "map50": 1.0, "map75": 1.0})
    # IoU 0.74 and 0.54: found at 0.5, not at 0.75
    shifted = [Detections(b + np.array([6, 0, 6, 0], np.float32), score, lab)
               for b, lab in zip(truth_boxes, truth_labels, strict=True)]
    result = coco_map(shifted, truth_boxes, truth_labels, 3)
    assert result["map50"] == pytest.approx(1.0) and result["map75"] == 0.0 and 0.0 < result["map"] < 0.5
    none = [Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))] * 2
    assert coco_map(none, truth_boxes, truth_labels, 3)["map"] == 0.0


def test_match_detections_needs_same_class_and_iou():
    ref = Detections(np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32), np.ones(2, np.float32),
                     np.array([1, 2]))
    cand = Detections(np.array([[1, 0, 11, 10], [20, 20, 30, 30]], np.float32), np.ones(2, np.float32),
                      np.array([1, 1]))
    assert match_detections(ref, cand) == {"reference": 2, "candidate": 2, "matched": 1}


def test_upsampling_matches_pytorch_bilinear():
    logits = np.random.default_rng(0).standard_normal((3, 5, 5)).astype(np.float32)
    ours = upsample_bilinear(logits, 40)
    theirs = F.interpolate(torch.from_numpy(logits)[None], size=(40, 40), mode="bilinear", align_corners=False)[0]
    np.testing.assert_allclose(ours, theirs.numpy(), atol=1e-5)


def test_mask_metrics_hand_case():
    truth = np.array([[0, 0, 1, 1], [0, 0, 1, 1]])
    pred = np.array([[0, 0, 1, 1], [0, 1, 1, 1]])
    result = mask_metrics(truth, pred, 3)
    # background IoU 3/4, class 1 IoU 4/5, class 2 absent from both and not counted
    assert result["miou"] == pytest.approx((0.75 + 0.8) / 2) and result["pixel_accuracy"] == 7 / 8


def test_task_parity_of_a_model_with_itself_is_perfect_and_noise_is_seen():
    spec = parse_model_name("ssdlite_v2_0.35@64")
    torch.manual_seed(0)
    model = spec.build(4)
    task = task_for(spec, 4)
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    outputs = torch_outputs(model, x)
    task.agreement_score = 0.0  # an untrained model is never confident; compare every kept box
    same = task_parity(task, outputs, outputs)
    assert same["box_recall"] == 1.0 and same["sqnr_db"]["cls_logits"] == float("inf")
    noisy = [o + np.random.default_rng(1).standard_normal(o.shape).astype(np.float32) for o in outputs]
    assert task_parity(task, outputs, noisy)["sqnr_db"]["cls_logits"] < 30


def test_comparison_page_draws_boxes_and_masks(tmp_path):
    from edgemb.tasks.render import comparison_page, draw_boxes, draw_mask

    pixels = np.zeros((2, 32, 32, 3), np.uint8)
    det = Detections(np.array([[4, 4, 20, 20]], np.float32), np.array([0.9], np.float32), np.array([1]))
    drawn = np.asarray(draw_boxes(pixels[0], det, ("background", "top")))
    assert drawn.shape == (64, 64, 3) and drawn.any()  # the box outline is painted on a black image
    assert not np.asarray(draw_boxes(pixels[0], det, None, min_score=0.95)).any()  # below the score: nothing drawn
    mask = np.zeros((32, 32), np.uint8)
    mask[8:16, 8:16] = 2
    blended = np.asarray(draw_mask(pixels[0], mask))
    assert blended[20, 20].any() and not blended[0, 0].any()
    page = comparison_page("t", pixels, {"float": [det, det], "int8": [mask, mask]}, None, ["a line"])
    assert page.count("<img") == 4 and "a line" in page

