"""Every task through the one deploy: a task object for each zoo entry with the parity a budget judges."""

from __future__ import annotations

import numpy as np

from edgemb.budget import FAIL, PASS, Budget
from edgemb.metrics import parity
from edgemb.tasks import ClassificationTask, SegmentationTask, task_for
from edgemb.zoo import parse_model_name

DETECTOR, SEGMENTER = "ssdlite_v2_0.35@96", "lraspp_v3l_0.5@128"  # the shipped task reference models, small


def test_every_zoo_entry_has_a_task_and_classification_parity_is_the_metrics_one():
    task = task_for(parse_model_name("v1_0.25"), 10)
    assert isinstance(task, ClassificationTask) and task.output_names == ("logits",) and task.metric == "top1"
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((50, 10)).astype(np.float32)
    noisy = logits + 0.5 * rng.standard_normal(logits.shape).astype(np.float32)
    labels = rng.integers(0, 10, 50)
    assert task.parity([logits], [noisy], labels) == parity(logits, noisy, labels)
    assert task.parity([logits], [noisy]) == parity(logits, noisy, None)
    assert task.score(task.postprocess([logits]), labels)["top1"] == float(np.mean(logits.argmax(1) == labels))
    assert task_for(parse_model_name(DETECTOR)).metric == "map"
    assert task_for(parse_model_name(SEGMENTER)).metric == "miou"


def test_segmentation_parity_without_truth_is_points_lost_to_float_and_a_budget_judges_it():
    task = SegmentationTask(8, 3)
    logits = np.zeros((4, 3, 8, 8), np.float32)
    logits[:, 1, :, :4] = 1.0  # left half class 1, right half background
    same = task.parity([logits], [logits.copy()])
    assert same["est_drop"] == same["est_drop_high"] == 0.0 and same["agreement"] == 1.0
    assert "no labels" in same["est_basis"] and Budget(max_drop=0.5).judge(same)[0] == PASS
    flipped = logits.copy()
    flipped[:, 2, :2, :2] = 5.0  # a corner becomes class 2
    worse = task.parity([logits], [flipped])
    assert worse["est_drop"] > 0.5 and worse["mask_agreement"] < 1.0
    assert Budget(max_drop=0.5).judge(worse)[0] == FAIL
    assert isinstance(worse["sqnr_db"], float) and set(worse["sqnr_db_outputs"]) == {"seg_logits"}
