"""Tasks an IMP round can train on: a registry from task name to a builder."""

from typing import Optional

from .classification import ClassificationTask
from .datasets import EMBEDDED, REAL, DatasetMissingError

CLASSIFICATION_TASKS = tuple(sorted(EMBEDDED) + sorted(REAL))
TASK_NAMES = CLASSIFICATION_TASKS


def build_task(name: str, data_root: Optional[str] = None, image_size: int = 16, num_workers: int = 0):
    if name in CLASSIFICATION_TASKS:
        return ClassificationTask.from_name(name, data_root, image_size, num_workers)
    raise ValueError(f"No such task: {name!r}; choose one of {list(TASK_NAMES)}")


__all__ = ["build_task", "ClassificationTask", "DatasetMissingError", "TASK_NAMES"]
