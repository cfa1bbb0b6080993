"""Errors that no retry can fix end a trial once, with one readable line, not Ray's retries.

Ray Tune 2.60 retries every exception a trainable raises (``FailureConfig(max_failures)``; the
count is per trial, and its public API has no way to mark an error as not retryable:
``Trial.handle_error`` counts every user error alike). Retries are for dead workers and nodes;
a missing dataset, an unreadable weights file or a diverging run fails the same way every time.
So the trainable catches those (``DETERMINISTIC_ERRORS``), reports one final result
``{TRIAL_ERROR: "<type>: <message>"}`` and returns: Tune ends the trial (TERMINATED, not
retried), and ``trial_failures`` turns it, with the trials that errored after Ray's retries, into
one line each for the end of the sweep. A trial ended this way is not rerun by ``--resume`` (Tune
holds it as finished): fix the input and start a sweep under a new ``--name``.

Which errors: ``ValueError`` (bad files and configs: ``WeightsError``, ``MaskFileError``,
``CifarFormatError``, a rewind state or mask that does not fit), the file errors a retry on the same
storage repeats (``FileNotFoundError`` with ``DatasetMissingError``, ``IsADirectoryError``,
``NotADirectoryError``, ``PermissionError``), ``TrainingDivergedError`` (same seed, same data, same
divergence) and ``UpstreamFailedError``. Everything else keeps Ray's retries: ``OSError`` at large
(a network or disk hiccup), ``RuntimeError`` (CUDA out of memory next to other trials, a faulty
GPU), ``MemoryError``, and programming errors (``KeyError``, ``TypeError``...), whose traceback
Ray keeps in the trial's ``error.txt``.

Consumers of results skip the error result: ``round_results_only`` wraps the callbacks that read
a round's fields; the scheduler and searchers test ``is_error_result``.
"""

import functools
import sys
from typing import Callable, Iterable, List, Optional

from ray import tune
from ray.tune import Callback

from ..train import TrainingDivergedError

TRIAL_ERROR = "trial_error"  # the key of a trial's final result when a deterministic error ended it


class UpstreamFailedError(RuntimeError):
    """A transfer trial whose upstream trajectory failed: its mask will never exist."""


DETERMINISTIC_ERRORS = (ValueError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError,
                        TrainingDivergedError, UpstreamFailedError)


def is_error_result(result: dict) -> bool:
    return TRIAL_ERROR in result


def describe(error: BaseException) -> str:
    """One line: the error's type and message (its first line; our messages name the file)."""
    message = " ".join(str(error).split()) or "(no message)"
    return f"{type(error).__name__}: {message}"


def fail_once(trainable: Callable, objective: Optional[str] = None) -> Callable:
    """``trainable`` that ends its trial with an error result on a deterministic error, instead
    of raising it into Ray's retries. ``objective``: a maximised searcher's metric, which Tune
    requires in every result; the error result holds its worst value, -inf, so that Optuna records
    the trial as complete and steers away (an lr that diverges), where NaN or None would fail its
    bookkeeping."""

    @functools.wraps(trainable)
    def run(config, *args, **kwargs):
        try:
            return trainable(config, *args, **kwargs)
        except DETERMINISTIC_ERRORS as error:
            line = describe(error)
            print(f"ray_lth: trial failed, not retried (the same input fails the same way): {line}",
                  file=sys.stderr, flush=True)
            tune.report({TRIAL_ERROR: line, **({objective: float("-inf")} if objective else {})})

    return run


def trial_failures(results: Iterable) -> List[str]:
    """``trial <name> failed: <message>`` for each trial of a ResultGrid that ended by a
    deterministic error or errored after Ray's retries (the traceback stays in its error.txt)."""
    lines = []
    for result in results:
        name = result.path.rstrip("/").rsplit("/", 1)[-1] if result.path else "?"
        if result.error is not None:
            cause = getattr(result.error, "cause", None) or result.error
            lines.append(f"trial {name} failed after Ray's retries: {describe(cause).splitlines()[0][:300]} "
                         f"(traceback: {result.path}/error.txt)")
        elif result.metrics and is_error_result(result.metrics):
            lines.append(f"trial {name} failed: {result.metrics[TRIAL_ERROR]}")
    return lines


_HOOKS = ("setup", "on_step_begin", "on_step_end", "on_trial_start", "on_trial_restore", "on_trial_save",
          "on_trial_complete", "on_trial_recover", "on_trial_error", "on_checkpoint", "on_experiment_end",
          "get_state", "set_state")


class _RoundResultsOnly(Callback):
    """Passes every hook on to ``callback``, results but a trial's error result."""

    def __init__(self, callback: Callback):
        self.callback = callback

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if not is_error_result(result):
            self.callback.on_trial_result(iteration=iteration, trials=trials, trial=trial, result=result, **info)


def _forward(hook: str):
    def forward(self, *args, **kwargs):
        return getattr(self.callback, hook)(*args, **kwargs)

    forward.__name__ = hook
    return forward


for _hook in _HOOKS:
    setattr(_RoundResultsOnly, _hook, _forward(_hook))


def round_results_only(callbacks: Iterable[Callback]) -> List[Callback]:
    """``callbacks`` that never see a trial's error result (it carries no round)."""
    return [_RoundResultsOnly(callback) for callback in callbacks]
