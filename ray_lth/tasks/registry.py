"""The task registry: a task name -> its builder, options and training defaults, and the lookups
configs, preflight and trials make in it. It imports no task family: each family (classification,
``ssl/``, ``detection/``, ``segmentation/``) registers its own tasks here when imported.

A task may declare *options* (e.g. the simCLR ``temperature``): named values with defaults that
a config or search space sets like any other field (``ImpConfig.task_options``). A classification
task can hold out a validation set (``val_images``) for best-validation epoch selection.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Sequence

from ..registry import Registry
from .datasets import DatasetMissingError
from .loading import Loading, loading_for


@dataclass(frozen=True)
class TaskEntry:
    name: str
    builder: Callable[..., Any]  # (name, data_root, image_size, loading, **options) -> task
    options: Dict[str, Any] = field(default_factory=dict)  # option -> default
    schedule: str = "embedded"  # the Table 1 preset this task's real data trains with
    check: Optional[Callable[[Dict[str, Any]], None]] = None  # raises ValueError for a bad option value
    selection: str = "last"  # the epoch whose scores a round reports, unless the config says (see selection.py)
    val_images: Optional[int] = None  # default size of the held-out validation set; None: the task has none
    # the task θ_p was trained on (supervised ImageNet for θ_Img): the file's head is this task's
    # own head γ_p and is loaded with the backbone (every other task gets a new head), and θ_p is
    # already the trained dense network, so round 0 evaluates it instead of training it again
    weights_trained_on_it: bool = False
    # the weights format pre-trained on this very task (a MoCo v2 file on the moco task): a file
    # of that format (given, or detected under weights_format=auto) is likewise the trained dense
    # network and round 0 only scores it; the authors' main_moco_imp.py and SimCLR/main.py prune
    # θ_p before any training
    pretext_format: Optional[str] = None
    # (options) -> what the task reads under data_root, relative, a folder ending in "/"; checked
    # before Ray starts (``check_data``). None: the task reads no files (embedded data)
    data_files: Optional[Callable[[Mapping[str, Any]], Sequence[str]]] = None
    # the task names which parameters of its model are the backbone (``backbone_parameters``), so
    # a schedule may train them at another lr than the head (backbone_lr_factor)
    names_backbone: bool = False
    # what a round after the first restores from the rewind point, the rest carrying over trained
    # from the round before (rewind.REWIND_SCOPES), unless the config says: the authors' own per task
    rewind_scope: str = "all"
    # the optimizer's state (momentum) goes on from round to round, as where the authors build the
    # optimizer once for the whole trajectory (SimCLR/main.py, MoCo/main_moco_imp.py)
    carry_optimizer: bool = False


TASKS: Registry[TaskEntry] = Registry("task")


def register_task(name: str, builder: Callable[..., Any], options: Optional[Dict[str, Any]] = None,
                  schedule: str = "embedded", check: Optional[Callable[[Dict[str, Any]], None]] = None,
                  selection: str = "last", val_images: Optional[int] = None, weights_trained_on_it: bool = False,
                  pretext_format: Optional[str] = None,
                  data_files: Optional[Callable[[Mapping[str, Any]], Sequence[str]]] = None,
                  names_backbone: bool = False, rewind_scope: str = "all", carry_optimizer: bool = False) -> None:
    TASKS.register(name)(TaskEntry(name, builder, dict(options or {}), schedule, check, selection, val_images,
                                   weights_trained_on_it, pretext_format, data_files, names_backbone, rewind_scope,
                                   carry_optimizer))


def task_options(name: str) -> Dict[str, Any]:
    """The options task ``name`` accepts, with their defaults."""
    return dict(TASKS.get(name).options)


def check_task_options(name: str, options: Mapping[str, Any]) -> Dict[str, Any]:
    """``options`` completed with defaults; an option the task lacks, or a value it refuses, is an
    error naming both (checked when a config is built, so before Ray starts)."""
    entry = TASKS.get(name)
    unknown = sorted(set(options) - set(entry.options))
    if unknown:
        raise ValueError(f"task {name!r} takes no option {unknown}; its options are {sorted(entry.options) or 'none'}")
    completed = {**entry.options, **options}
    if entry.check is not None:
        entry.check(completed)
    return completed


def check_data(name: str, data_root: Optional[str], options: Mapping[str, Any]) -> None:
    """A cheap look, not a load: every file task ``name`` reads under ``data_root`` exists and
    its first byte reads, every folder it reads holds something. DatasetMissingError naming the
    first path that fails and everything the task expects there."""
    entry = TASKS.get(name)
    expected = list(entry.data_files(check_task_options(name, options))) if entry.data_files else []
    if not expected:
        return
    if not data_root:
        raise DatasetMissingError(f"task {name!r} reads a local dataset: pass --data-root (nothing is downloaded)")
    root = Path(data_root)
    for relative in expected:
        path = root / relative
        try:
            if relative.endswith("/"):
                if next(path.iterdir(), None) is None:
                    raise FileNotFoundError("an empty folder")
            else:
                with open(path, "rb") as f:
                    f.read(1)
        except OSError as error:
            why = error.strerror or str(error)
            raise DatasetMissingError(f"task {name!r} reads {path}: {why}; expected under {root}: "
                                      f"{', '.join(expected)} (nothing is downloaded)") from None


def task_loading(name: str, options: Mapping[str, Any], num_workers: Optional[int], device, cpus: Optional[float],
                 precision: str = "fp32"):
    """How task ``name``'s loaders feed ``device`` (``loading.loading_for``): loader workers, sized
    from the trial's ``cpus``, only where it decodes files; the batches computed in ``precision``."""
    entry = TASKS.get(name)
    reads_files = bool(entry.data_files and entry.data_files(check_task_options(name, options)))
    return loading_for(num_workers, device, cpus, reads_files, precision)


def build_task(name: str, data_root: Optional[str] = None, image_size: int = 16, loading: Loading = Loading(),
               val_images: Optional[int] = None, **options):
    """The task ``name``; with ``val_images``, one that holds that many training images out for validation."""
    if name not in TASKS.names():
        raise ValueError(f"No such task: {name!r}; choose one of {sorted(TASKS.names())}")
    entry = TASKS.get(name)
    options = check_task_options(name, options)
    if val_images is None:
        return entry.builder(name, data_root, image_size, loading, **options)
    if entry.val_images is None:
        raise ValueError(f"task {name!r} has no validation split: val_images={val_images} cannot be used")
    return entry.builder(name, data_root, image_size, loading, val_images=val_images, **options)
