"""A sign of life inside long rounds: one line per epoch (epoch, loss, ETA of the round's training),
at most once every ``every_s`` seconds, and none at all for rounds shorter than that.

A paper round is 182 epochs; without this a trial is silent for its whole round. Passed to
``run_trajectory(progress=...)``, which calls it after every epoch.
"""

import sys
import time
from typing import Callable, Optional, TextIO


class EpochProgressPrinter:
    def __init__(self, label: str, every_s: float = 10.0, stream: Optional[TextIO] = None,
                 clock: Callable[[], float] = time.monotonic):
        if not every_s > 0:
            raise ValueError(f"every_s must be > 0, got {every_s}")
        self.label = label
        self.every_s = every_s
        self.stream = stream
        self.clock = clock
        self._last_print: Optional[float] = None
        self._round: Optional[int] = None

    def __call__(self, round_index: int, epochs_done: int, epochs: int, loss: float, seconds: float) -> None:
        now = self.clock()
        if round_index != self._round:  # a new round: its first line waits a full interval too
            self._round, self._last_print = round_index, now - seconds
        if epochs_done >= epochs or now - self._last_print < self.every_s:
            return  # the round's own result line follows the last epoch
        self._last_print = now
        eta = seconds / epochs_done * (epochs - epochs_done)
        print(f"{self.label} round {round_index}: epoch {epochs_done}/{epochs}, loss {loss:.4f}, "
              f"ETA of the round {_duration(eta)}", file=self.stream or sys.stdout, flush=True)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"
