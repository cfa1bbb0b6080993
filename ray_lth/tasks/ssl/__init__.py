"""Self-supervised pre-training tasks, simCLR and MoCo v2, on which IMP finds tickets (paper,
Figure 2 and Table 2); their metric is the contrastive top-1 of the paper's code, or top-1
retrieval accuracy (Eq. (2)) with eval_metric=retrieval_top1."""

from ..registry import register_task
from .images import required_files
from .moco import MOCO_OPTIONS, MoCoTask, build_moco, check_moco_options
from .retrieval import retrieval_top1
from .simclr import SIMCLR_OPTIONS, SimCLRTask, build_simclr, check_simclr_options

# rounds restore what θ_p holds and carry the rest and the momentum over, as SimCLR/main.py and
# MoCo/main_moco_imp.py (rewind.py)
register_task("simclr", build_simclr, options=SIMCLR_OPTIONS, schedule="simclr", check=check_simclr_options,
              pretext_format="simclr", data_files=lambda options: required_files(options["dataset"]),
              rewind_scope="weights_file", carry_optimizer=True)
register_task("moco", build_moco, options=MOCO_OPTIONS, schedule="moco", check=check_moco_options,
              pretext_format="moco", data_files=lambda options: required_files(options["dataset"]),
              rewind_scope="weights_file", carry_optimizer=True)

__all__ = ["MoCoTask", "SimCLRTask", "retrieval_top1"]
