"""Tasks an IMP round can train on, each family registering its own in ``registry.TASKS``:
classification (``classification.py``), simCLR and MoCo v2 (``ssl/``), detection and
segmentation. Imports run one way: this package -> the families -> ``registry``.
"""

from . import detection, segmentation
from .voc import detection_files, segmentation_files
from . import ssl  # noqa: F401  (registers the simclr and moco tasks)
from .classification import CLASSIFICATION_TASKS, ClassificationTask
from .datasets import DatasetMissingError
from .loading import Loading
from .registry import (TASKS, TaskEntry, build_task, check_data, check_task_options, register_task, task_loading,
                       task_options)
from .wrapping import load_pretrained_heads, wrap_for_training

# detection rounds restore the pruned convolutions alone, as the authors' Detection/train_imp.py
register_task("detection_shapes", detection.detection_shapes, schedule="embedded_detection",
              options={"detector": "faster_rcnn", "scenes_train": 512, "scenes_test": 128},
              check=detection.check_detection_options, rewind_scope="pruned")
register_task("voc_detection", detection.voc_detection_task, options={"detector": "faster_rcnn"},
              schedule="voc_detection", check=detection.check_detection_options,
              data_files=lambda options: detection_files(), rewind_scope="pruned")
register_task("segmentation_shapes", segmentation.segmentation_shapes, schedule="embedded_segmentation",
              options={"segmenter": "deeplabv3plus", "scenes_train": 512, "scenes_test": 128},
              check=segmentation.check_segmentation_options, names_backbone=True)
register_task("voc_segmentation", segmentation.voc_segmentation_task, options={"segmenter": "deeplabv3plus"},
              schedule="voc_segmentation", check=segmentation.check_segmentation_options,
              data_files=lambda options: segmentation_files(), names_backbone=True)


__all__ = ["build_task", "check_data", "check_task_options", "CLASSIFICATION_TASKS", "ClassificationTask",
           "DatasetMissingError", "Loading", "load_pretrained_heads", "register_task", "task_loading", "task_options",
           "TaskEntry", "TASKS", "wrap_for_training"]
