"""Tasks an IMP round can train on, each family registering its own in ``registry.TASKS``:
classification (``classification.py``), simCLR and MoCo v2 (``ssl/``), detection
(``detection/``) and segmentation (``segmentation/``). Imports run one way: this package ->
the families -> ``registry``, which imports no family.
"""

from . import detection, segmentation, ssl  # noqa: F401  (each registers its tasks)
from .classification import CLASSIFICATION_TASKS, ClassificationTask
from .datasets import DatasetMissingError
from .loading import Loading
from .registry import (TASKS, TaskEntry, build_task, check_data, check_task_options, register_task, task_loading,
                       task_options)
from .wrapping import load_pretrained_heads, wrap_for_training

__all__ = ["build_task", "check_data", "check_task_options", "CLASSIFICATION_TASKS", "ClassificationTask",
           "DatasetMissingError", "Loading", "load_pretrained_heads", "register_task", "task_loading", "task_options",
           "TaskEntry", "TASKS", "wrap_for_training"]
