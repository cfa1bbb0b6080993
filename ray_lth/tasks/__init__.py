"""Tasks an IMP round can train on: a registry from task name to a builder and its options.

A task may declare *options* (e.g. the simCLR ``temperature``): named values with defaults that
a config or search space sets like any other field (``ImpConfig.task_options``). A classification
task can hold out a validation set (``val_images``) for best-validation epoch selection. A task may also
``wrap`` the backbone IMP prunes into the model it trains (a projection head, a detector), sharing
the backbone's parameters, so the mask stays the backbone's; the rewind state holds the wrapper's
own entries too (``rewind.capture_state``). A wrapper keeping a copy of the backbone (MoCo's key
encoder) masks it in ``apply_backbone_mask(mask)``. A task names what its wrapper adds in
``heads`` and may load them from a θ_p file (``load_pretrained_heads``) where they are γ_p.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from ..registry import Registry
from . import detection, segmentation
from .classification import ClassificationTask
from .datasets import EMBEDDED, NORMALIZATIONS, REAL, DatasetMissingError, required_files
from .voc import detection_files, segmentation_files
from .loading import Loading, loading_for
from .validation_split import VAL_IMAGES


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


def wrap_for_training(task, backbone, spec):
    """The module a round trains: the task's wrapper around ``backbone``, or the backbone itself."""
    wrap = getattr(task, "wrap", None)
    return backbone if wrap is None else wrap(backbone, spec)


def load_pretrained_heads(task, trained_model, spec, path, weights_format: str, found: str) -> Tuple[str, List[str]]:
    """Load the heads a θ_p file holds for ``task`` (γ_p: a contrastive file's projection head on
    its own pre-training task). Returns one line saying which heads came from the file and which
    are new, and the wrapper's modules the file filled (the task's ``head_modules`` of those heads)."""
    loader = getattr(task, "load_pretrained_heads", None)
    from_wrapper = loader(trained_model, path, weights_format, found) if loader is not None else []
    # the heads of a file trained on this very task are loaded with the backbone (weights.load_pretrained)
    loaded = (list(spec.heads) if TASKS.get(task.name).weights_trained_on_it else []) + from_wrapper
    new = [head for head in getattr(task, "heads", spec.heads) if head not in loaded]
    line = (f"ray_lth: θ_p from {path} ({found} format), task {task.name}: heads from the file: "
            f"{', '.join(loaded) or 'none'}; new: {', '.join(new) or 'none'}")
    return line, [task.head_modules[head] for head in from_wrapper]


def _classification(name, data_root, image_size, loading, val_images=None, **options):
    return ClassificationTask.from_name(name, data_root, image_size, loading, val_images, **options)


def _check_normalize(options: Dict[str, Any]) -> None:
    if options["normalize"] not in NORMALIZATIONS:
        raise ValueError(f"normalize={options['normalize']!r} is not allowed; choose one of {list(NORMALIZATIONS)} "
                         f"(dataset: the dataset's own mean/std; none: [0, 1] pixels, for converted simCLR "
                         f"checkpoints)")


CLASSIFICATION_TASKS = tuple(sorted(EMBEDDED) + sorted(REAL))
# the paper's datasets report the test accuracy of the best-validation epoch, as the authors do;
# the embedded sets keep the last epoch. VisDA-2017 too: the authors pick its best epoch on the
# real-image domain they also test on, which has no counterpart here (best_val holds out synthetic images)
_BEST_VAL_BY_DEFAULT = ("cifar10", "cifar100", "svhn", "fashion_mnist")
for _name in sorted(EMBEDDED):
    register_task(_name, _classification, val_images=VAL_IMAGES[_name])
for _name in sorted(set(REAL) - {"imagenet"}):
    register_task(_name, _classification, options={"normalize": "dataset"}, check=_check_normalize,
                  selection="best_val" if _name in _BEST_VAL_BY_DEFAULT else "last", val_images=VAL_IMAGES[_name],
                  data_files=lambda options, name=_name: required_files(name))
# supervised ImageNet classification is θ_Img's own pre-training task (m_Img, Figure 2): its head
# is the file's fc, round 0 scores θ_p untrained, and rounds train with Table 1's ImageNet row and
# report their best epoch on ImageNet's val set (its only labelled held-out set), as main_imp_imagenet.py
register_task("imagenet", _classification, options={"normalize": "dataset"}, check=_check_normalize,
              schedule="imagenet", selection="best_test", weights_trained_on_it=True,
              data_files=lambda options: required_files("imagenet"))

from . import ssl  # noqa: E402,F401  (registers the simclr and moco tasks)

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


__all__ = ["build_task", "check_data", "check_task_options", "Loading", "task_loading", "ClassificationTask", "DatasetMissingError", "load_pretrained_heads",
           "register_task", "task_options", "TASKS", "wrap_for_training"]
