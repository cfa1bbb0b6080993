"""COCO-style AP, AP50 and AP75 of box predictions, computed by pycocotools' COCOeval.

Ground truth and predictions are plain per-image dicts (torchvision's detection format), so the
torchvision and detectron2 backends are scored by the very same code.
"""

import contextlib
import io
from typing import Dict, List, Mapping

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def _xywh(boxes) -> List[List[float]]:
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1).tolist()


def coco_ap(predictions: List[Mapping], targets: List[Mapping], num_classes: int) -> Dict[str, float]:
    """AP (IoU 0.50:0.95), AP50 and AP75 over images.

    ``targets[i]``: ``boxes`` (K, 4) x1y1x2y2, ``labels`` (K,) in 1..num_classes, optional
    ``ignore`` (K,) bool (VOC's *difficult* objects: matching them neither helps nor hurts, as
    COCO's crowd boxes). ``predictions[i]``: ``boxes``, ``labels``, ``scores``.
    """
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} predictions for {len(targets)} images")
    images, annotations, detections = [], [], []
    for image_id, (prediction, target) in enumerate(zip(predictions, targets), start=1):
        images.append({"id": image_id})
        ignore = np.asarray(target.get("ignore", np.zeros(len(target["labels"]), bool)), bool)
        for box, label, crowd in zip(_xywh(target["boxes"]), np.asarray(target["labels"]).tolist(), ignore.tolist()):
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(label),
                                "bbox": box, "area": box[2] * box[3], "iscrowd": int(crowd)})
        for box, label, score in zip(_xywh(prediction["boxes"]), np.asarray(prediction["labels"]).tolist(),
                                     np.asarray(prediction["scores"], dtype=np.float64).tolist()):
            detections.append({"image_id": image_id, "category_id": int(label), "bbox": box, "score": score})
    if not annotations:
        raise ValueError("no ground-truth boxes: AP is undefined")
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet):  # pycocotools prints its progress and table
        truth = COCO()
        truth.dataset = {"images": images, "annotations": annotations,
                         "categories": [{"id": c} for c in range(1, num_classes + 1)]}
        truth.createIndex()
        if not detections:
            return {"AP": 0.0, "AP50": 0.0, "AP75": 0.0}
        evaluation = COCOeval(truth, truth.loadRes(detections), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    # stats[0:3] = AP@[.5:.95], AP@.5, AP@.75 over all areas, 100 detections an image; -1 = no ground truth
    ap, ap50, ap75 = (max(0.0, float(v)) for v in evaluation.stats[:3])
    return {"AP": ap, "AP50": ap50, "AP75": ap75}
