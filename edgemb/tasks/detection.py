"""Detection on the host: default boxes, box coding, score threshold and NMS in numpy.

One implementation for every backend and for the float reference, so a comparison measures the network and
never two post-processing codes. Boxes are (x1, y1, x2, y2) in input pixels; label 0 is the background.
The conventions follow torchvision's SSD (DefaultBoxGenerator, BoxCoder with weights 10/10/5/5, per-class
NMS) so its checkpoints decode as torchvision decodes them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgemb.data.boxes import box_iou
from edgemb.tasks.base import budget_parity, synthdet_truth
from edgemb.zoo.detection import AnchorConfig

BOX_EXP_CLIP = math.log(1000.0 / 16)  # torchvision's clamp of exp() arguments in decoding


@dataclass(frozen=True)
class DetectionSettings:
    """Post-processing knobs: the defaults keep every box an evaluator needs (torchvision uses 0.001/300)."""

    score_threshold: float = 0.01
    nms_iou: float = 0.55
    topk_per_class: int = 200
    max_detections: int = 100


@dataclass
class Detections:
    """One image's detections: boxes (K, 4) xyxy in pixels, scores (K,), labels (K,) >= 1, best first."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    def above(self, score: float) -> Detections:
        """Only the detections scoring at least `score` (what a drawn picture or a box match uses)."""
        keep = self.scores >= score
        return Detections(self.boxes[keep], self.scores[keep], self.labels[keep])


def grid_sizes(resolution: int, levels: int, first_stride: int = 16) -> list[int]:
    """Feature-map sizes: the first at `first_stride`, each next one a stride-2, padding-1 conv (rounds up)."""
    size = resolution
    stride = 1
    while stride < first_stride:
        size, stride = -(-size // 2), stride * 2
    sizes = [size]
    for _ in range(levels - 1):
        size = -(-size // 2)
        sizes.append(size)
    return sizes


def anchor_scales(config: AnchorConfig) -> list[float]:
    """Box scales per map as torchvision computes them (centiles between min and max ratio, half min first)."""
    levels = len(config.aspect_ratios)
    low, high = int(100 * config.min_ratio), int(100 * config.max_ratio)
    step = (high - low) // (levels - 2)
    centiles = [low // 2, low] + [c + step for c in range(low, high + 1, step)]
    return [c / 100 for c in centiles]


def default_boxes(config: AnchorConfig, resolution: int) -> np.ndarray:
    """All default boxes (A, 4) xyxy in pixels, in the order the head flattens its outputs (map, y, x, box)."""
    scales = anchor_scales(config)
    boxes = []
    for k, size in enumerate(grid_sizes(resolution, len(config.aspect_ratios), config.first_stride)):
        s_k, s_next = scales[k], scales[k + 1]
        shapes = [(s_k, s_k), (math.sqrt(s_k * s_next),) * 2]
        for ratio in config.aspect_ratios[k]:
            root = math.sqrt(ratio)
            shapes += [(s_k * root, s_k / root), (s_k / root, s_k * root)]
        wh = np.asarray(shapes, np.float64)
        centers = (np.arange(size, dtype=np.float64) + 0.5) / size
        cy, cx = np.meshgrid(centers, centers, indexing="ij")
        grid = np.stack([cx.ravel(), cy.ravel()], axis=1)
        cxcywh = np.concatenate([np.repeat(grid, len(wh), axis=0), np.tile(wh, (size * size, 1))], axis=1)
        boxes.append(np.clip(cxcywh, 0.0, 1.0))
    cxcywh = np.concatenate(boxes)
    xyxy = np.concatenate([cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, :2] + cxcywh[:, 2:] / 2], axis=1)
    return (xyxy * resolution).astype(np.float32)


def encode(boxes: np.ndarray, anchors: np.ndarray, weights: tuple[float, ...] = (10.0, 10.0, 5.0, 5.0)) -> np.ndarray:
    """Regression targets that turn each anchor into its matched box (the inverse of `decode`, for training)."""
    wx, wy, ww, wh = weights
    aw, ah = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    ax, ay = anchors[:, 0] + aw / 2, anchors[:, 1] + ah / 2
    bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    bx, by = boxes[:, 0] + bw / 2, boxes[:, 1] + bh / 2
    return np.stack([wx * (bx - ax) / aw, wy * (by - ay) / ah, ww * np.log(bw / aw), wh * np.log(bh / ah)],
                    axis=1).astype(np.float32)


def decode(deltas: np.ndarray, anchors: np.ndarray, weights: tuple[float, ...] = (10.0, 10.0, 5.0, 5.0)) -> np.ndarray:
    """Box regressions (A, 4) applied to the default boxes: xyxy in pixels."""
    wx, wy, ww, wh = weights
    deltas = deltas.astype(np.float64)
    aw, ah = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    ax, ay = anchors[:, 0] + aw / 2, anchors[:, 1] + ah / 2
    cx, cy = deltas[:, 0] / wx * aw + ax, deltas[:, 1] / wy * ah + ay
    w = np.exp(np.minimum(deltas[:, 2] / ww, BOX_EXP_CLIP)) * aw
    h = np.exp(np.minimum(deltas[:, 3] / wh, BOX_EXP_CLIP)) * ah
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression: indices of kept boxes, highest score first (ties keep input order)."""
    order = np.argsort(-scores, kind="stable")
    overlap = box_iou(boxes[order], boxes[order]) > iou_threshold  # one matrix, then a cheap greedy pass
    suppressed = np.zeros(len(order), bool)
    keep = []
    for i in range(len(order)):
        if not suppressed[i]:
            keep.append(order[i])
            suppressed |= overlap[i]
    return np.asarray(keep, np.int64)


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax."""
    shifted = logits.astype(np.float64) - logits.max(axis=axis, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=axis, keepdims=True)


def postprocess(cls_logits: np.ndarray, box_regression: np.ndarray, anchors: np.ndarray, resolution: int,
                settings: DetectionSettings = DetectionSettings(),
                weights: tuple[float, ...] = (10.0, 10.0, 5.0, 5.0)) -> Detections:
    """One image's raw head outputs -> final detections: softmax, per-class threshold, top-k, NMS, clip."""
    if cls_logits.shape[0] != anchors.shape[0] or box_regression.shape != (anchors.shape[0], 4):
        raise ValueError(f"head outputs {cls_logits.shape}/{box_regression.shape} do not fit {len(anchors)} anchors")
    scores = softmax(cls_logits)
    boxes = np.clip(decode(box_regression, anchors, weights), 0.0, float(resolution))
    all_boxes, all_scores, all_labels = [], [], []
    for label in range(1, scores.shape[1]):
        candidates = np.flatnonzero(scores[:, label] > settings.score_threshold)
        if candidates.size == 0:
            continue
        top = candidates[np.argsort(-scores[candidates, label], kind="stable")[: settings.topk_per_class]]
        kept = top[nms(boxes[top], scores[top, label], settings.nms_iou)]
        all_boxes.append(boxes[kept])
        all_scores.append(scores[kept, label])
        all_labels.append(np.full(len(kept), label, np.int64))
    if not all_scores:
        return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))
    boxes, scores, labels = (np.concatenate(v) for v in (all_boxes, all_scores, all_labels))
    order = np.argsort(-scores, kind="stable")[: settings.max_detections]
    return Detections(boxes[order].astype(np.float32), scores[order].astype(np.float32), labels[order])


def match_anchors(anchors: np.ndarray, gt_boxes: np.ndarray, gt_labels: np.ndarray,
                  iou_threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """SSD matching for training: each anchor's class (0 background) and box; every object keeps its best anchor."""
    labels = np.zeros(len(anchors), np.int64)
    boxes = np.zeros((len(anchors), 4), np.float32)
    if len(gt_boxes) == 0:
        return labels, boxes
    iou = box_iou(gt_boxes, anchors)
    best_gt = iou.argmax(0)
    best_iou = iou.max(0)
    best_gt[iou.argmax(1)] = np.arange(len(gt_boxes))
    best_iou[iou.argmax(1)] = 1.0
    matched = best_iou >= iou_threshold
    labels[matched] = gt_labels[best_gt[matched]]
    boxes[matched] = gt_boxes[best_gt[matched]]
    return labels, boxes


def coco_map(detections: list[Detections], gt_boxes: list[np.ndarray], gt_labels: list[np.ndarray],
             num_classes: int) -> dict[str, float]:
    """COCO mAP@[.5:.95] and mAP@0.5 by pycocotools (the reference evaluator), over classes 1..num_classes-1."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if len(detections) != len(gt_boxes) or len(gt_boxes) != len(gt_labels):
        raise ValueError(f"{len(detections)} detection sets for {len(gt_boxes)} ground-truth images")
    images = [{"id": i + 1} for i in range(len(gt_boxes))]
    annotations = []
    for i, (boxes, labels) in enumerate(zip(gt_boxes, gt_labels, strict=True)):
        for box, label in zip(boxes.tolist(), labels.tolist(), strict=True):
            w, h = box[2] - box[0], box[3] - box[1]
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": int(label),
                                "bbox": [box[0], box[1], w, h], "area": w * h, "iscrowd": 0})
    results = [{"image_id": i + 1, "category_id": int(label), "score": float(score),
                "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]}
               for i, det in enumerate(detections) for b, score, label in zip(det.boxes, det.scores, det.labels,
                                                                               strict=True)]
    if not annotations:
        raise ValueError("no ground-truth boxes: mAP is undefined")
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO()
        truth.dataset = {"images": images, "annotations": annotations,
                         "categories": [{"id": c} for c in range(1, num_classes)]}
        truth.createIndex()
        if not results:
            return {"map": 0.0, "map50": 0.0, "map75": 0.0}
        evaluator = COCOeval(truth, truth.loadRes(results), "bbox")
        evaluator.params.maxDets = [1, 10, 100]
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = evaluator.stats
    return {"map": float(max(stats[0], 0.0)), "map50": float(max(stats[1], 0.0)), "map75": float(max(stats[2], 0.0))}


def match_detections(reference: Detections, candidate: Detections, iou_threshold: float = 0.5) -> dict[str, int]:
    """Greedy one-to-one matching of a candidate's boxes to the reference's (same class, IoU >= threshold)."""
    iou = box_iou(reference.boxes, candidate.boxes)
    if iou.size:
        iou[reference.labels[:, None] != candidate.labels[None, :]] = 0.0
    matched = 0
    used = np.zeros(len(candidate), bool)
    for r in range(len(reference)):
        if not len(candidate):
            break
        row = np.where(used, 0.0, iou[r])
        best = int(row.argmax())
        if row[best] >= iou_threshold:
            used[best] = True
            matched += 1
    return {"reference": len(reference), "candidate": len(candidate), "matched": matched}


class DetectionTask:
    """Detection's two ends of the chain: decode raw head outputs, and score/compare the decoded boxes."""

    name = "detection"
    output_names = ("cls_logits", "bbox_regression")
    metric = "map"  # COCO mAP@[.5:.95], in points for the budget
    metric_label = "mAP"
    decoded = "confident boxes"
    pictures = True  # a deploy draws truth, float and int8 boxes for the first images
    report_fields = ("metric", "float_map", "quant_map", "float_map50", "quant_map50", "drop", "est_drop",
                     "est_drop_low", "est_drop_high", "est_basis", "agreement", "agreement_basis", "box_recall",
                     "box_precision", "map_vs_float", "sqnr_db", "sqnr_db_outputs")
    agreement_score = 0.5  # float detections at least this confident are the reference boxes of a comparison

    def __init__(self, config: AnchorConfig, resolution: int, num_classes: int,
                 settings: DetectionSettings = DetectionSettings()) -> None:
        self.config = config
        self.resolution = resolution
        self.num_classes = num_classes
        self.settings = settings
        self.anchors = default_boxes(config, resolution)

    def postprocess(self, outputs: list[np.ndarray]) -> list[Detections]:
        """Batched raw outputs [class logits (N, A, C), regressions (N, A, 4)] -> detections per image."""
        cls_logits, regression = outputs
        return [postprocess(c, r, self.anchors, self.resolution, self.settings, self.config.box_weights)
                for c, r in zip(cls_logits, regression, strict=True)]

    def score(self, predictions: list[Detections], truth: Any) -> dict[str, float]:
        """COCO mAP of predictions against ground truth (a SynthSet or anything with boxes and labels)."""
        return coco_map(predictions, truth.boxes, truth.labels, self.num_classes)

    def compare(self, reference: list[Detections], candidate: list[Detections]) -> dict[str, Any]:
        """Candidate vs float detections: mAP with confident float boxes as truth, and one-to-one box matches."""
        confident = [d.above(self.agreement_score) for d in reference]
        counts = np.array([list(match_detections(r, c.above(self.agreement_score)).values())
                           for r, c in zip(confident, candidate, strict=True)]).reshape(-1, 3).sum(0)
        result: dict[str, Any] = {"float_boxes": int(counts[0]), "candidate_boxes": int(counts[1]),
                                  "matched_boxes": int(counts[2]),
                                  "box_recall": round(counts[2] / counts[0], 4) if counts[0] else 1.0,
                                  "box_precision": round(counts[2] / counts[1], 4) if counts[1] else 1.0,
                                  "score_threshold": self.agreement_score}
        if counts[0]:
            vs_float = coco_map(candidate, [d.boxes for d in confident], [d.labels for d in confident],
                                self.num_classes)
            result.update(map_vs_float=round(vs_float["map"], 4), map50_vs_float=round(vs_float["map50"], 4))
        return result

    def truth(self, data: Any, pp: Any) -> Any:
        """Ground-truth boxes of an evaluation set read from synthdet (None for unlabelled data)."""
        return synthdet_truth(data, pp)

    def truth_results(self, truth: Any) -> list[Detections]:
        """Ground truth as detections (score 1), to draw beside the predicted ones."""
        return [Detections(b, np.ones(len(b), np.float32), lab) for b, lab in zip(truth.boxes, truth.labels,
                                                                                  strict=True)]

    def agreement(self, result: dict[str, Any]) -> tuple[float, str]:
        """Box F1 with float: one-to-one matches over the confident float and candidate boxes."""
        total = result["float_boxes"] + result["candidate_boxes"]
        return (round(2 * result["matched_boxes"] / total, 6) if total else 1.0,
                f"box F1 with float (score >= {self.agreement_score}, IoU >= 0.5, same class)")

    def parity(self, float_outputs: list[np.ndarray], candidate_outputs: list[np.ndarray],
               truth: Any = None) -> dict[str, Any]:
        """mAP drop in points with truth, else 100 x (1 - mAP against float boxes); see budget_parity."""
        return budget_parity(self, float_outputs, candidate_outputs, truth)
