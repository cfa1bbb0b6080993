"""Semantic segmentation around the pruned backbone (paper, Figures 4-5): DeepLabv3+ built each
round, scored by mIoU, on embedded scenes of shapes (``segmentation_shapes``) or Pascal VOC 2012
(``voc_segmentation``)."""

from ..registry import register_task
from .task import SegmentationTask, check_segmentation_options, segmentation_shapes, voc_segmentation_task
from .voc import segmentation_files

register_task("segmentation_shapes", segmentation_shapes, schedule="embedded_segmentation",
              options={"segmenter": "deeplabv3plus", "scenes_train": 512, "scenes_test": 128},
              check=check_segmentation_options, names_backbone=True)
register_task("voc_segmentation", voc_segmentation_task, options={"segmenter": "deeplabv3plus"},
              schedule="voc_segmentation", check=check_segmentation_options,
              data_files=lambda options: segmentation_files(), names_backbone=True)

__all__ = ["SegmentationTask"]
