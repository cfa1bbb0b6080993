"""The configuration of one IMP trajectory, checked before anything runs.

``ImpConfig.from_dict`` takes the flat dict a search space or the command line produces: the
training keys (epochs, lr, ...) override the chosen ``schedule``, the task's own options (e.g. the
simCLR ``temperature``) go to ``task_options``; unknown keys are errors. Like ``schedule``, the
epoch ``selection`` defaults to the task's own: ``best_val`` for the paper's classification sets
(CIFAR-10/100, SVHN, Fashion-MNIST), ``last`` elsewhere.
"""

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Dict, Mapping, Optional

from .distributed import check_global_batch
from .models import MODELS
from .perturbation import MASK_PERTURBATIONS
from .pruning import PRUNING_METHODS
from .rewind import REWIND_POINTS, REWIND_SCOPES
from .selection import SELECTIONS
from .tasks import CLASSIFICATION_TASKS, TASKS, check_task_options, task_options
from .tasks.validation_split import TRAIN_IMAGES
from .train import SCHEDULES, TRAIN_FIELDS, TrainHparams, schedule_for
from .storage import is_file
from .weights import WEIGHTS_FORMATS, WeightsError, file_format

DATA_PARALLEL_TASKS = CLASSIFICATION_TASKS + ("simclr", "moco")  # the tasks whose rounds may span workers


@dataclass(frozen=True)
class ImpConfig:
    model: str = "resnet20"
    task: str = "digits"
    weights: Optional[str] = None  # θ_p file; None = start from the random init θ_0
    weights_format: str = "auto"
    rewind: str = "pretrained"
    rewind_fraction: float = 0.05  # k of θ_k%, used by rewind="early"
    # what rounds after the first restore from the rewind point, the rest carrying over trained from
    # the round before (rewind.py): all, weights_file (what θ_p holds) or pruned (the prunable
    # weights); None: the task's own (TaskEntry.rewind_scope), "all" where it cannot apply
    rewind_scope: Optional[str] = None
    # the optimizer's state (momentum) goes on from round to round; None: the task's own (TaskEntry)
    carry_optimizer: Optional[bool] = None
    pruning: str = "global"
    prune_fraction: float = 0.2  # of the *remaining* weights, per round
    rounds: int = 10  # pruning rounds after the dense round 0 (rounds 0..rounds are trained)
    seed: int = 0
    schedule: str = "embedded"
    train: TrainHparams = field(default_factory=lambda: SCHEDULES["embedded"])
    # which epoch a round reports (selection.py): "last", or the test scores of the epoch with the best
    # validation score on val_images training images held out (None: the task's default size)
    selection: str = "last"
    # round 0 trains the dense network; False where θ_p *is* that network, trained on this very
    # task (supervised ImageNet IMP, a MoCo v2 file on moco, a simCLR file on simclr): round 0
    # evaluates θ_p and prunes it, as the authors' IMP scripts. from_dict decides it from the file
    # (_weights_trained_on_task) unless given; train_dense=True trains a dense round 0 regardless
    train_dense: bool = True
    val_images: Optional[int] = None
    mask_file: Optional[str] = None  # a transferred ticket: round 0 trains under this mask, not dense
    mask_label: str = ""  # names that mask in group names, e.g. "m_shapes-r3"
    # section 5.2 baselines: train a perturbation of mask_file (random, complementary, flip) instead
    mask_perturbation: str = "none"
    perturbation_fraction: float = 0.1  # p of the flip perturbation m + Δm_p
    rewind_file: Optional[str] = None  # θ_k% saved by the trajectory that found mask_file (rewind "early")
    data_root: Optional[str] = None
    image_size: int = 16
    device: str = "auto"
    # data loader worker processes; None: sized from the trial's CPUs on a GPU, none on the CPU (tasks/loading.py)
    num_workers: Optional[int] = None
    # data-parallel rounds (distributed.py): each round trains over this many workers, splitting
    # the global batch_size among them; 1 is the one-process round
    workers_per_trial: int = 1
    task_options: Dict[str, Any] = field(default_factory=dict)  # the task's declared options, completed

    def __post_init__(self):
        def allowed(name, value, choices):
            if value not in choices:
                raise ValueError(f"{name}={value!r} is not allowed; choose one of {sorted(choices)}")

        allowed("model", self.model, MODELS.names())
        allowed("task", self.task, TASKS.names())
        allowed("weights_format", self.weights_format, WEIGHTS_FORMATS)
        allowed("rewind", self.rewind, REWIND_POINTS)
        self._resolve_carry_over()
        allowed("pruning", self.pruning, PRUNING_METHODS)
        allowed("schedule", self.schedule, SCHEDULES)
        allowed("selection", self.selection, SELECTIONS)
        self._check_validation_split()
        if not 0.0 < self.prune_fraction < 1.0:
            raise ValueError(f"prune_fraction must be in (0, 1), got {self.prune_fraction}")
        if not 0.0 < self.rewind_fraction < 1.0:
            raise ValueError(f"rewind_fraction must be in (0, 1), got {self.rewind_fraction}")
        if self.rounds < 0:
            raise ValueError(f"rounds must be >= 0, got {self.rounds}")
        if self.rewind == "pretrained" and not self.weights:
            raise ValueError("rewind='pretrained' rewinds to θ_p: give weights=<file>, or choose rewind 'init'")
        if self.rewind == "init" and self.weights:
            raise ValueError("rewind='init' trains from the random init θ_0, so weights would be unused: drop weights")
        if self.weights and not is_file(self.weights):  # a local path or a storage URI
            raise ValueError(f"weights={self.weights!r}: no such file")
        if self.mask_file and not is_file(self.mask_file):
            raise ValueError(f"mask_file={self.mask_file!r}: no such file")
        allowed("mask_perturbation", self.mask_perturbation, MASK_PERTURBATIONS)
        if not 0.0 < self.perturbation_fraction <= 1.0:
            raise ValueError(f"perturbation_fraction must be in (0, 1], got {self.perturbation_fraction}")
        if self.rewind_file and self.rewind != "early":
            raise ValueError(f"rewind_file holds a θ_k% to rewind to: it needs rewind='early', got {self.rewind!r}")
        if self.rewind_file and not is_file(self.rewind_file):
            raise ValueError(f"rewind_file={self.rewind_file!r}: no such file")
        if not self.train_dense and (not self.weights or self.rewind != "pretrained" or self.mask_file):
            raise ValueError("train_dense=False evaluates θ_p as the trained dense network: it needs weights=<file>, "
                             f"rewind='pretrained' and no mask_file (got weights={self.weights!r}, "
                             f"rewind={self.rewind!r}, mask_file={self.mask_file!r})")
        if self.num_workers is not None and (isinstance(self.num_workers, bool) or not isinstance(self.num_workers, int)
                                             or self.num_workers < 0):
            raise ValueError(f"num_workers must be an integer >= 0 (or unset: sized from the CPUs), got {self.num_workers!r}")
        if self.image_size < 8:
            raise ValueError(f"image_size must be >= 8, got {self.image_size}")
        if self.train.backbone_lr_factor != 1.0 and not TASKS.get(self.task).names_backbone:
            raise ValueError(f"backbone_lr_factor={self.train.backbone_lr_factor}: task {self.task!r} does not name its "
                             f"backbone's parameters; leave backbone_lr_factor at 1.0")
        object.__setattr__(self, "task_options", check_task_options(self.task, self.task_options))
        self._check_data_parallel()

    def _resolve_carry_over(self) -> None:
        """The task's rewind scope and optimizer carry-over where the config names none; a scope
        that cannot apply is refused naming the field."""
        entry = TASKS.get(self.task)
        fresh = self.rewind == "reinit"  # every round draws the whole model anew: by default nothing carries over
        if self.rewind_scope is None:
            applies = not fresh and (entry.rewind_scope != "weights_file" or self.weights)
            object.__setattr__(self, "rewind_scope", entry.rewind_scope if applies else "all")
        if self.carry_optimizer is None:
            object.__setattr__(self, "carry_optimizer", entry.carry_optimizer and not fresh)
        if self.rewind_scope not in REWIND_SCOPES:
            raise ValueError(f"rewind_scope={self.rewind_scope!r} is not allowed; choose one of {sorted(REWIND_SCOPES)}")
        if not isinstance(self.carry_optimizer, bool):
            raise ValueError(f"carry_optimizer must be true or false, got {self.carry_optimizer!r}")
        if self.rewind_scope == "weights_file" and not self.weights:
            raise ValueError("rewind_scope='weights_file' restores the entries the θ_p file holds: give weights=<file>, "
                             "or choose rewind_scope 'all' or 'pruned'")
        if self.rewind == "reinit" and self.rewind_scope != "all":
            raise ValueError(f"rewind='reinit' draws the whole model afresh every round: rewind_scope must be 'all', "
                             f"got {self.rewind_scope!r}")

    def _check_data_parallel(self) -> None:
        workers = self.workers_per_trial
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers_per_trial must be an integer >= 1, got {workers!r}")
        if workers == 1:
            return
        if self.task not in DATA_PARALLEL_TASKS:
            raise ValueError(f"workers_per_trial={workers}: task {self.task!r} trains in one process; data-parallel "
                             f"rounds run the classification tasks, simclr and moco")
        check_global_batch(self.train.batch_size, workers)
        splits = self.task_options.get("shuffle_bn_splits")
        if self.task == "moco" and splits % workers:
            raise ValueError(f"shuffle_bn_splits={splits} must be a multiple of workers_per_trial={workers}: "
                             f"each worker encodes shuffle_bn_splits / workers_per_trial groups of the shuffled keys")

    def _check_validation_split(self) -> None:
        default_size = TASKS.get(self.task).val_images
        if self.selection != "best_val":
            if self.val_images is not None:
                raise ValueError(f"val_images={self.val_images} holds out a validation set for selection='best_val'; "
                                 f"with selection={self.selection!r} leave val_images unset")
            return
        if default_size is None:
            raise ValueError(f"selection='best_val' picks the epoch by a validation set, and task {self.task!r} has "
                             f"none (only classification tasks hold one out): choose selection='last'")
        if self.val_images is None:
            object.__setattr__(self, "val_images", default_size)
        if isinstance(self.val_images, bool) or not isinstance(self.val_images, int) or self.val_images < 1:
            raise ValueError(f"val_images must be a positive number of training images, got {self.val_images!r}")
        train_images = TRAIN_IMAGES.get(self.task)  # known for the built-in sets; others are checked when built
        if train_images is not None and self.val_images >= train_images:
            raise ValueError(f"val_images={self.val_images} leaves nothing to train on: task {self.task!r} has "
                             f"{train_images} training images")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "ImpConfig":
        values = dict(values)
        task = values.get("task", cls.task)
        options = task_options(task) if task in TASKS.names() else {}
        known = {f.name for f in fields(cls)} - {"train", "task_options"}
        unknown = sorted(set(values) - known - set(TRAIN_FIELDS) - set(options))
        if unknown:
            allowed = sorted(known | set(TRAIN_FIELDS) | set(options))
            raise ValueError(f"unknown config keys {unknown} (task {task!r}); allowed: {allowed}")
        overrides = {k: values.pop(k) for k in TRAIN_FIELDS if k in values}
        values["task_options"] = {k: values.pop(k) for k in options if k in values}
        # a task's own Table 1 preset (e.g. detection's) unless the config names one
        schedule = values.setdefault("schedule", TASKS.get(task).schedule if task in TASKS.names() else "embedded")
        if task in TASKS.names():
            values.setdefault("selection", TASKS.get(task).selection)
            if "train_dense" not in values:  # read θ_p's format only where the config leaves it open
                values["train_dense"] = not _weights_trained_on_task(TASKS.get(task), values)
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule={schedule!r} is not allowed; choose one of {sorted(SCHEDULES)}")
        train = schedule_for(schedule, **overrides)
        # a fine-tune (rounds=0: no pruning), dense or under a transferred ticket, at the batch of the
        # authors' fine-tune script, so that a ticket and the dense fine-tune it is judged against
        # train alike; unless the config names its batch (fine_tune_batch_size=None: the schedule's)
        fine_tune = int(values.get("rounds", cls.rounds)) == 0
        if fine_tune and train.fine_tune_batch_size and "batch_size" not in overrides:
            train = replace(train, batch_size=train.fine_tune_batch_size)
        return cls(**values, train=train)

    def to_dict(self) -> dict:
        flat = {k: v for k, v in asdict(self).items() if k not in ("train", "task_options")}
        return {**flat, **self.task_options, **self.train.to_dict()}

    def sparsity_after(self, round_index: int) -> float:
        """The nominal sparsity of round k: 1 - (1 - prune_fraction)^k."""
        return 1.0 - (1.0 - self.prune_fraction) ** round_index


def _weights_trained_on_task(entry, values: Mapping[str, Any]) -> bool:
    """Whether θ_p, rewound to in every round, is already the dense network trained on the task,
    so that round 0 scores it untrained and the first mask prunes its own magnitudes: the task
    its file was trained on (supervised ImageNet), or a file whose format (under
    weights_format=auto: detected from its keys) is the task's pretext format, a MoCo v2 file on
    moco or a simCLR file on simclr (main_moco_imp.py, SimCLR/main.py prune θ_p before training)."""
    weights, weights_format = values.get("weights"), values.get("weights_format", ImpConfig.weights_format)
    if not weights or values.get("rewind", ImpConfig.rewind) != "pretrained" or values.get("mask_file"):
        return False
    if entry.weights_trained_on_it:
        return True
    # a bad format or a missing file is refused by __post_init__, naming the field
    if entry.pretext_format is None or weights_format not in WEIGHTS_FORMATS or not is_file(weights):
        return False
    try:
        return file_format(weights, weights_format) == entry.pretext_format
    except WeightsError as error:  # an unreadable file, named as the preflight names it
        raise ValueError(f"weights: {error}") from None
