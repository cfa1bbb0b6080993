"""A sweep of IMP on a self-supervised task (simCLR, MoCo v2) whose task options are checked by
value, not only by name, before Ray starts: a bad ``temperature`` or ``queue_size`` is named by
the launcher instead of failing inside every trial."""

from dataclasses import dataclass
from typing import List

from .config import ImpConfig
from .spaces import SweepSpace
from .tasks.ssl import OPTION_CHECKS


@dataclass(frozen=True)
class SelfSupervisedSweepSpace(SweepSpace):
    def validate(self) -> List[ImpConfig]:
        configs = super().validate()
        for config in configs:
            if config.task in OPTION_CHECKS:
                OPTION_CHECKS[config.task](config.task_options)
        return configs
