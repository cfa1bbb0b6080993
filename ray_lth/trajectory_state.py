"""What an IMP trajectory needs to go on after a round: the round records, the next mask, the
rewind state; saved into a folder that is a local path or a storage Location (``storage.py``:
an object store on a cluster), never assuming a local filesystem.

Folder layout: ``trajectory.json`` (next round and the records), ``mask_round_KK.rlthmask`` (the
mask round KK trains under; a folder saved every round keeps all of them) and ``rewind_state.pt``.
"""

import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Union

import torch

from .masks import Mask, load_mask, save_mask
from .storage import Location, location

STATE_FILE = "trajectory.json"
MASK_FILE = "mask_round_{:02d}.rlthmask"
REWIND_FILE = "rewind_state.pt"

Folder = Union[str, Path, Location]


@dataclass
class RoundRecord:
    round: int
    sparsity: float  # over the prunable weights
    metrics: Dict[str, float]
    metric: float  # the task's primary metric (higher is better)
    epochs: int  # epochs spent by the trajectory so far, this round included
    seconds: float  # wall time of this round's training and evaluation
    mask_digest: str
    # SHA-256 of the whole model (backbone + heads, rewind_state's key layout) as the round started
    start_digest: str = ""


@dataclass
class TrajectoryState:
    """Everything needed to start round ``next_round``."""

    next_round: int
    mask: Mask  # the mask round ``next_round`` trains under
    round_mask: Mask  # the mask the last finished round trained under
    rewind_state: Dict[str, torch.Tensor]  # the whole model at θ_p, θ_0 or θ_k% (round 0's start for "reinit"); see rewind.py
    records: List[RoundRecord] = field(default_factory=list)

    def save(self, folder: Folder) -> Location:
        """Write the state into ``folder``; ``trajectory.json`` goes last and atomically, so a
        kill mid-save leaves the previous state readable. Masks are named by the round that trains
        under them, so saving every round into one folder keeps every round's mask."""
        folder = location(folder)
        last = self.next_round - 1
        if not (folder / MASK_FILE.format(last)).exists():
            save_mask(self.round_mask, folder / MASK_FILE.format(last), {"round": last})
        save_mask(self.mask, folder / MASK_FILE.format(self.next_round), {"round": self.next_round})
        buffer = io.BytesIO()
        torch.save(self.rewind_state, buffer)
        (folder / REWIND_FILE).write_bytes(buffer.getvalue())
        state = {"next_round": self.next_round, "records": [asdict(r) for r in self.records]}
        (folder / STATE_FILE).write_text(json.dumps(state, indent=1))
        return folder

    @staticmethod
    def peek_next_round(folder: Folder) -> int:
        state_path = location(folder) / STATE_FILE
        try:
            return int(json.loads(state_path.read_text())["next_round"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{state_path}: unreadable trajectory state ({error})") from None

    @classmethod
    def load(cls, folder: Folder, next_round: Optional[int] = None) -> "TrajectoryState":
        """Read a saved state, or an earlier round's (``next_round``) from a folder that kept
        its masks. Raises ValueError (MaskFileError for a bad mask) naming the file."""
        folder = location(folder)
        state_path = folder / STATE_FILE
        newest = cls.peek_next_round(folder)
        next_round = newest if next_round is None else next_round
        if not 1 <= next_round <= newest:
            raise ValueError(f"{state_path}: holds rounds up to {newest - 1}, not {next_round - 1}")
        try:
            records = [RoundRecord(**r) for r in json.loads(state_path.read_text())["records"]]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{state_path}: unreadable trajectory state ({error})") from None
        try:
            rewind_state = torch.load(io.BytesIO((folder / REWIND_FILE).read_bytes()), map_location="cpu",
                                      weights_only=True)
        except Exception as error:
            raise ValueError(f"{folder / REWIND_FILE}: unreadable rewind weights ({error})") from None
        return cls(
            next_round=next_round,
            mask=load_mask(folder / MASK_FILE.format(next_round)),
            round_mask=load_mask(folder / MASK_FILE.format(next_round - 1)),
            rewind_state=rewind_state,
            records=[r for r in records if r.round < next_round],
        )
