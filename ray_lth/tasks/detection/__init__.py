"""Object detection around the pruned backbone (paper, Figures 4-5): a detector built each round,
scored by COCO-style AP, on embedded scenes of shapes (``detection_shapes``) or Pascal VOC07+12
(``voc_detection``)."""

from ..registry import register_task
from .task import DetectionTask, check_detection_options, detection_shapes, voc_detection_task
from .voc import detection_files

# detection rounds restore the pruned convolutions alone, as the authors' Detection/train_imp.py
register_task("detection_shapes", detection_shapes, schedule="embedded_detection",
              options={"detector": "faster_rcnn", "scenes_train": 512, "scenes_test": 128},
              check=check_detection_options, rewind_scope="pruned")
register_task("voc_detection", voc_detection_task, options={"detector": "faster_rcnn"},
              schedule="voc_detection", check=check_detection_options,
              data_files=lambda options: detection_files(), rewind_scope="pruned")

__all__ = ["DetectionTask"]
