"""The files a sweep's configs name, checked on the driver before Ray starts.

A file that no retry can fix (an unreadable θ_p, a data root without the dataset, a mask or rewind
state of another architecture) is one message naming the field, the file and what was expected,
within seconds, instead of a failure in every trial. Each distinct file is read once, however
many configs share it. What is checked:

- ``weights``: read as plain tensors and fitted to the model's backbone (``weights.load_pretrained``);
- ``data_root``: every file the task reads there exists and reads, every folder holds something
  (``tasks.check_data``: a look, not a dataset load); embedded tasks read none;
- ``mask_file``: a complete ray_lth mask file that fits the model's prunable weights;
- ``rewind_file``: a weights-only torch file whose keys and shapes are the model's and its task
  wrapper's (the task is built here as the trial builds it: for a real dataset, a few seconds).

Paths must be visible to the driver, also with ``--address``: the launcher resolves them to
absolute paths, and a cluster's nodes are expected to see the same paths (a shared filesystem).
Weights, masks and rewind states given as storage URIs (``s3://...``) are read here through the
storage layer, as the trials read them (the driver writes the experiment there, so it has the
credentials). Where a trial still meets such an error (a node that sees other files than the
driver), it fails once, without retries (``ray_lth.tune.trial_errors``).
"""

from typing import Callable, Dict, Iterable, List, Optional, Tuple

import torch

from .config import ImpConfig


def check_files(configs: Iterable[ImpConfig]) -> None:
    """ValueError ``<field>: <message naming the file>`` for the first unusable file."""
    _Preflight().run(configs)


class _Preflight:
    """One pass over the configs; what it reads (a file, a built task) it reads once."""

    def __init__(self):
        self.checked = set()
        self.masks: Dict[str, dict] = {}
        self.states: Dict[str, dict] = {}
        self.tasks: Dict[Tuple, object] = {}

    def run(self, configs: Iterable[ImpConfig]) -> None:
        for config in configs:
            for field, key, check in self._checks(config):
                if field is None or key in self.checked:
                    continue
                self.checked.add(key)
                try:
                    check(config)
                except (ValueError, FileNotFoundError) as error:  # WeightsError, MaskFileError, DatasetMissingError
                    raise ValueError(f"{key[0]}: {error}") from None

    def _checks(self, c: ImpConfig) -> List[Tuple[Optional[str], Tuple, Callable[[ImpConfig], None]]]:
        """(the field's value, what makes a check distinct, the check); the data check runs also
        without a data_root, which a task reading files needs."""
        return [(c.weights, ("weights", c.model, c.weights, c.weights_format), self._weights),
                (c.data_root or "", ("data_root", c.task, c.data_root, _options(c)), self._data),
                (c.mask_file, ("mask_file", c.model, c.mask_file), self._mask),
                (c.rewind_file, ("rewind_file", c.model, c.rewind_file, _task_key(c)), self._rewind)]

    @staticmethod
    def _weights(config: ImpConfig) -> None:
        from .models import build_model, get_model_spec
        from .weights import load_pretrained

        spec = get_model_spec(config.model)
        # the head is checked where the task's class count is known: when the trial builds the task
        load_pretrained(build_model(config.model, 1), config.weights, spec.heads, config.weights_format,
                        not_from_weights=spec.not_from_weights)

    @staticmethod
    def _data(config: ImpConfig) -> None:
        from .tasks import check_data

        check_data(config.task, config.data_root, config.task_options)

    def _mask(self, config: ImpConfig) -> None:
        from .masks import check_compatible, load_mask
        from .models import build_model, get_model_spec, prunable_parameters

        if config.mask_file not in self.masks:
            self.masks[config.mask_file] = load_mask(config.mask_file)
        spec = get_model_spec(config.model)
        prunable = prunable_parameters(build_model(config.model, 1), spec.never_pruned)
        check_compatible(self.masks[config.mask_file], prunable, what=f"mask_file {config.mask_file}")

    def _rewind(self, config: ImpConfig) -> None:
        from .models import build_model, get_model_spec
        from .rewind import check_state_keys
        from .tasks import build_task, wrap_for_training
        from .weights import load_weights_only

        path = config.rewind_file
        if path not in self.states:
            state = load_weights_only(path, "rewind_file")  # never torch's advice to load with weights_only=False
            if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
                raise ValueError(f"{path}: expected a state dict of tensors (a whole-model rewind state)")
            self.states[path] = state
        key = _task_key(config)
        if key not in self.tasks:  # the wrapper's own entries depend on the task: build it as the trial does
            self._data(config)
            self.tasks[key] = build_task(config.task, config.data_root, config.image_size,
                                         val_images=config.val_images, **config.task_options)
        task = self.tasks[key]
        spec = get_model_spec(config.model)
        model = build_model(config.model, task.num_outputs)
        check_state_keys(self.states[path], model, wrap_for_training(task, model, spec), f"rewind_file {path}")


def _options(config: ImpConfig) -> Tuple:
    return tuple(sorted((k, repr(v)) for k, v in config.task_options.items()))


def _task_key(config: ImpConfig) -> Tuple:
    return (config.task, config.data_root, config.image_size, config.val_images, _options(config))
