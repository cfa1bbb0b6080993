"""AP/AP50/AP75 against hand-computed values and a brute-force COCO-style AP; mIoU against a
direct computation."""

import numpy as np
import pytest
import torch

from ray_lth.tasks.detection.metrics import coco_ap
from ray_lth.tasks.segmentation.metrics import confusion_matrix, segmentation_scores


def _target(boxes, labels, ignore=None):
    target = {"boxes": np.asarray(boxes, float), "labels": np.asarray(labels)}
    if ignore is not None:
        target["ignore"] = np.asarray(ignore, bool)
    return target


def _prediction(boxes, labels, scores):
    return {"boxes": np.asarray(boxes, float).reshape(-1, 4), "labels": np.asarray(labels), "scores": np.asarray(scores)}


def test_hand_made_boxes():
    truth = [_target([[0, 0, 10, 10]], [1])]
    assert coco_ap([_prediction([[0, 0, 10, 10]], [1], [0.9])], truth, 1) == pytest.approx(
        {"AP": 1.0, "AP50": 1.0, "AP75": 1.0})
    # IoU 0.72 passes the thresholds 0.50..0.70 (5 of 10): AP = 0.5, AP50 = 1, AP75 = 0
    assert coco_ap([_prediction([[0, 0, 10, 7.2]], [1], [0.9])], truth, 1) == pytest.approx(
        {"AP": 0.5, "AP50": 1.0, "AP75": 0.0})
    # the right box with the wrong class finds nothing
    assert coco_ap([_prediction([[0, 0, 10, 10]], [2], [0.9])], truth, 2)["AP"] == 0.0
    assert coco_ap([_prediction([], [], [])], truth, 1)["AP"] == 0.0


def test_ignored_objects_neither_help_nor_hurt():
    truth = [_target([[0, 0, 10, 10], [20, 20, 30, 30]], [1, 1], ignore=[False, True])]
    found_one = _prediction([[0, 0, 10, 10]], [1], [0.9])
    found_both = _prediction([[0, 0, 10, 10], [20, 20, 30, 30]], [1, 1], [0.9, 0.95])
    assert coco_ap([found_one], truth, 1)["AP"] == pytest.approx(1.0)  # the missed one was difficult
    assert coco_ap([found_both], truth, 1)["AP"] == pytest.approx(1.0)  # no false positive either
    counted = [_target([[0, 0, 10, 10], [20, 20, 30, 30]], [1, 1])]
    assert coco_ap([found_one], counted, 1)["AP"] < 0.6


def _iou(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _brute_force_ap(predictions, targets, label, threshold):
    """COCO's rule spelled out: detections by falling score, each takes the unmatched ground
    truth of its image with the highest IoU >= threshold; 101-point interpolated precision."""
    detections = [(score, i, box) for i, p in enumerate(predictions)
                  for box, lab, score in zip(p["boxes"], p["labels"], p["scores"]) if lab == label]
    detections.sort(key=lambda d: -d[0])
    truths = {i: [box for box, lab in zip(t["boxes"], t["labels"]) if lab == label] for i, t in enumerate(targets)}
    total = sum(len(v) for v in truths.values())
    matched = {i: [False] * len(v) for i, v in truths.items()}
    hits = []
    for _, i, box in detections:
        best, best_iou = None, threshold
        for j, truth in enumerate(truths[i]):
            iou = _iou(box, truth)
            if not matched[i][j] and iou >= best_iou:
                best, best_iou = j, iou
        if best is not None:
            matched[i][best] = True
        hits.append(best is not None)
    tp = np.cumsum(hits)
    recall = tp / total
    precision = tp / np.arange(1, len(hits) + 1)
    samples = []
    for r in np.linspace(0, 1, 101):
        reached = precision[recall >= r - 1e-12]
        samples.append(reached.max() if len(reached) else 0.0)
    return float(np.mean(samples))


def test_ap50_and_ap75_equal_a_brute_force_computation_on_random_boxes():
    rng = np.random.default_rng(0)
    predictions, targets = [], []
    for _ in range(12):
        k = rng.integers(1, 4)
        corners = rng.uniform(0, 60, size=(k, 2))
        truth = np.concatenate([corners, corners + rng.uniform(8, 30, size=(k, 2))], 1)
        labels = rng.integers(1, 3, size=k)
        jitter = truth + rng.normal(0, 3, size=truth.shape)  # hits of varying IoU, plus clutter
        clutter_corner = rng.uniform(0, 60, size=(2, 2))
        clutter = np.concatenate([clutter_corner, clutter_corner + 15], 1)
        boxes = np.concatenate([jitter, clutter])
        predictions.append(_prediction(boxes, np.concatenate([labels, rng.integers(1, 3, size=2)]),
                                       rng.uniform(0, 1, size=len(boxes))))
        targets.append(_target(truth, labels))
    ours = coco_ap(predictions, targets, 2)
    for key, threshold in (("AP50", 0.5), ("AP75", 0.75)):
        reference = np.mean([_brute_force_ap(predictions, targets, c, threshold) for c in (1, 2)])
        assert ours[key] == pytest.approx(reference, abs=1e-9), key


def test_confusion_matrix_and_miou_against_direct_counts():
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 1]])
    predicted = torch.tensor([[0, 1, 1, 1], [2, 0, 2, 2]])
    confusion = confusion_matrix(predicted, target, 3)
    for t in range(3):
        for p in range(3):
            assert confusion[t, p] == int(((target == t) & (predicted == p)).sum())
    # class 0: tp 1, union 3; class 1: tp 2, union 4; class 2: tp 1, union 3 (the 255 pixel is ignored)
    scores = segmentation_scores(confusion)
    assert scores["mIoU"] == pytest.approx((1 / 3 + 2 / 4 + 1 / 3) / 3)
    assert scores["pixel_accuracy"] == pytest.approx(4 / 7)
    # a class absent from both prediction and target does not count
    assert segmentation_scores(confusion_matrix(target.clamp(max=2), target.clamp(max=2), 5))["mIoU"] == 1.0
    with pytest.raises(ValueError, match="target labels must be in 0..2 or 255"):
        confusion_matrix(predicted, target.clamp(max=7) + 3, 3)
