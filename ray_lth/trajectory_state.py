"""What an IMP trajectory needs to go on after a round: the round records, the next mask, and a
*reference* to the rewind state; saved into a folder that is a local path or a storage Location
(``storage.py``: an object store on a cluster), never assuming a local filesystem.

The rewind state (the whole model at θ_p, θ_0 or θ_k%, ~100 MB for ResNet-50) is named, not
copied, by a ``RewindReference``: θ_p (from its weights file) and θ_0 (from the seed) are rebuilt
as round 0 built them, a ``rewind_file`` is read where the config names it, and only θ_k%, which
nothing else can reproduce, is written, once per trajectory. Each is verified by its digest
when read back, so a resumed trajectory never restarts from other weights unnoticed.

What a round carries over, trained, from the round before (``rewind.CarriedState``: the entries
out of the rewind scope, the optimizer's momentum) changes every round and nothing rebuilds it:
it is written with every round, as ``carried_round_KK.pt`` (what round KK starts from).

Folder layout: ``trajectory.json`` (next round, the rewind reference, the entries rounds restore
and the records), ``mask_round_KK.rlthmask`` (the mask round KK trains under; a folder saved every
round keeps all of them), ``carried_round_KK.pt`` where the trajectory carries state over (a
folder saved every round keeps the newest two: enough to resume from the round before a damaged
newest one) and, for θ_k% only, ``rewind_state.pt``. A per-round checkpoint (``save_checkpoint``)
holds ``trajectory.json``, the next round's mask and what it carries over.
"""

import hashlib
import io
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Dict, List, Optional, Union

import torch

from .experiment_layout import CARRIED_FILE, MASK_FILE, REWIND_FILE, STATE_FILE
from .masks import Mask, load_mask, save_mask
from .rewind import CarriedState, backbone_state, state_digest
from .storage import Location, location
from .weights import file_sha256


Folder = Union[str, Path, Location]

# recompute: round 0's start rebuilt from the config: θ_p from the weights file at ``path`` (or
#   θ_0 from the seed), the heads as round 0 drew or loaded them (imp.start_state);
# file: a ``rewind_file`` (another trajectory's θ_k%) read at ``path``, never copied;
# captured: θ_k%, captured during round 0, saved once as ``path`` in the trajectory folder.
REWIND_KINDS = ("recompute", "file", "captured")


@dataclass(frozen=True)
class RewindReference:
    """Names a trajectory's rewind state and how to get it back, with the digests to verify it."""

    kind: str
    state_digest: str  # rewind.state_digest of the whole state (backbone and heads)
    backbone_digest: str  # of its backbone part, what a ticket rebuilds without the task
    num_outputs: int  # the task head's width, to rebuild the backbone
    path: Optional[str] = None  # the θ_p file (recompute; None for θ_0), the rewind_file, or the captured file's name
    sha256: Optional[str] = None  # of the bytes of the file at ``path`` (the θ_p file, the rewind_file)

    def __post_init__(self):
        if self.kind not in REWIND_KINDS:
            raise ValueError(f"rewind reference kind {self.kind!r}; expected one of {list(REWIND_KINDS)}")

    @classmethod
    def of(cls, state: Dict[str, torch.Tensor], kind: str, num_outputs: int, path=None) -> "RewindReference":
        """The reference to ``state``; ``path`` is hashed when the state is rebuilt from that file."""
        sha256 = file_sha256(path) if path is not None and kind != "captured" else None
        return cls(kind, state_digest(state), state_digest(backbone_state(state)), int(num_outputs),
                   None if path is None else str(path), sha256)

    def check_source(self) -> None:
        """ValueError when the file the state is rebuilt from is not the one the trajectory
        started from (replaced, edited, another file at the path)."""
        if self.kind == "captured" or self.path is None:
            return
        try:
            found = file_sha256(self.path)
        except OSError as error:
            raise ValueError(f"{self.path}: the trajectory's rewind point ({self._what()}) is unreadable "
                             f"({error}); it started from sha256 {self.sha256}") from None
        if found != self.sha256:
            raise ValueError(f"{self.path}: sha256 {found} differs from {self.sha256}, the {self._what()} this "
                             f"trajectory started from: refusing to resume from other weights (restore that file, "
                             f"or start a new trajectory)")

    def check_state(self, state: Dict[str, torch.Tensor], source: str = "") -> Dict[str, torch.Tensor]:
        """``state`` itself when its digest is the recorded one, else a ValueError naming both."""
        found = state_digest(state)
        if found != self.state_digest:
            raise ValueError(f"{source or self.path or 'the rebuilt θ_0'}: rewind state digest {found} differs from "
                             f"{self.state_digest}, the {self._what()} this trajectory recorded: refusing to resume "
                             f"from other weights")
        return state

    def read(self, folder: Optional[Folder] = None) -> Dict[str, torch.Tensor]:
        """The state of a ``captured`` reference (from ``folder``) or a ``file`` one, verified."""
        if self.kind == "recompute":
            raise ValueError("a recomputed rewind state is rebuilt from the config (imp.rebuilt_rewind_state), not read")
        source = location(folder) / self.path if self.kind == "captured" else location(self.path)
        try:
            data = source.read_bytes()
        except OSError as error:
            raise ValueError(f"{source}: rewind weights unreadable ({error})") from None
        if self.sha256 is not None and hashlib.sha256(data).hexdigest() != self.sha256:
            raise ValueError(f"{source}: sha256 {hashlib.sha256(data).hexdigest()} differs from {self.sha256}, "
                             f"the {self._what()} this trajectory started from")
        try:
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as error:  # a truncated or overwritten file: torch raises many kinds, and its
            # message may advise weights_only=False, which must never reach the user: the type alone
            raise ValueError(f"{source}: unreadable rewind weights ({type(error).__name__})") from None
        if not isinstance(state, dict):
            raise ValueError(f"{source}: not a rewind state (a {type(state).__name__}, not a state dict)")
        return self.check_state(state, str(source))

    def _what(self) -> str:
        return {"recompute": "θ_p file" if self.path else "random init θ_0", "file": "rewind_file",
                "captured": "θ_k% captured in round 0"}[self.kind]


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
    round_mask: Optional[Mask]  # the mask the last finished round trained under (None: read from a checkpoint)
    # the whole model at θ_p, θ_0 or θ_k% (round 0's start for "reinit"), see rewind.py; None when
    # loaded by a reference that imp.run_trajectory rebuilds (``rewind.kind`` "recompute" or "file")
    rewind_state: Optional[Dict[str, torch.Tensor]]
    rewind: RewindReference
    records: List[RoundRecord] = field(default_factory=list)
    # the entries rounds after the first restore from the rewind state (rewind.restored_keys); None: all
    restored_keys: Optional[List[str]] = None
    carried: Optional[CarriedState] = None  # what round ``next_round`` takes over from the last one

    def save(self, folder: Folder) -> Location:
        """Write the state into a trajectory folder; ``trajectory.json`` goes last and atomically,
        so a kill mid-save leaves the previous state readable. Masks are named by the round that
        trains under them, so saving every round into one folder keeps every round's mask. θ_k% is
        written by the save after round 0 (which captured it) or when missing, never rewritten
        every round."""
        folder = location(folder)
        last = self.next_round - 1
        if self.round_mask is not None and not (folder / MASK_FILE.format(last)).exists():
            save_mask(self.round_mask, folder / MASK_FILE.format(last), {"round": last})
        if self.rewind.kind == "captured" and (self.next_round == 1 or not (folder / self.rewind.path).exists()):
            buffer = io.BytesIO()
            torch.save(self.rewind_state, buffer)
            (folder / self.rewind.path).write_bytes(buffer.getvalue())
        self.save_checkpoint(folder)
        (folder / CARRIED_FILE.format(self.next_round - 2)).delete()  # the newest two stay
        return folder

    def save_checkpoint(self, folder: Folder) -> Location:
        """Write what a per-round checkpoint holds: ``trajectory.json``, the mask round
        ``next_round`` trains under and what it carries over; the rewind state only by reference (a
        captured θ_k% lives in the trajectory folder ``save`` writes)."""
        folder = location(folder)
        save_mask(self.mask, folder / MASK_FILE.format(self.next_round), {"round": self.next_round})
        if self.carried is not None:
            buffer = io.BytesIO()
            torch.save({"entries": self.carried.entries, "optimizer": self.carried.optimizer}, buffer)
            (folder / CARRIED_FILE.format(self.next_round)).write_bytes(buffer.getvalue())
        state = {"next_round": self.next_round, "rewind": asdict(self.rewind), "restored_keys": self.restored_keys,
                 "carries": self.carried is not None, "records": [asdict(r) for r in self.records]}
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
    def load(cls, folder: Folder, next_round: Optional[int] = None,
             rewind_folder: Optional[Folder] = None) -> "TrajectoryState":
        """Read a saved state, or an earlier round's (``next_round``) from a folder that kept
        its masks. A captured θ_k% is read from ``rewind_folder`` (default: ``folder``; for a
        per-round checkpoint, the trajectory folder) and verified; a rebuilt rewind state is left
        to ``imp.run_trajectory``. Raises ValueError (MaskFileError for a bad mask) naming the file."""
        folder = location(folder)
        state_path = folder / STATE_FILE
        newest = cls.peek_next_round(folder)
        next_round = newest if next_round is None else next_round
        if not 1 <= next_round <= newest:
            raise ValueError(f"{state_path}: holds rounds up to {newest - 1}, not {next_round - 1}")
        try:
            saved = json.loads(state_path.read_text())
            records = [RoundRecord(**r) for r in saved["records"]]
            if "rewind" not in saved:
                raise ValueError("no rewind reference: written by an older ray_lth, which saved the whole rewind state")
            rewind = RewindReference(**{f.name: saved["rewind"][f.name] for f in fields(RewindReference)})
            # written before rounds carried state over: every round restored the whole model
            restored, carries = saved.get("restored_keys"), saved.get("carries", False)
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{state_path}: unreadable trajectory state ({error})") from None
        round_mask_path = folder / MASK_FILE.format(next_round - 1)
        return cls(
            next_round=next_round,
            mask=load_mask(folder / MASK_FILE.format(next_round)),
            round_mask=load_mask(round_mask_path) if round_mask_path.exists() else None,
            rewind_state=rewind.read(rewind_folder or folder) if rewind.kind == "captured" else None,
            rewind=rewind,
            records=[r for r in records if r.round < next_round],
            restored_keys=restored,
            carried=_read_carried(folder / CARRIED_FILE.format(next_round)) if carries else None,
        )


def _read_carried(source: Location) -> CarriedState:
    """A round's carried state, or a ValueError naming the file: nothing else can rebuild it."""
    try:
        saved = torch.load(io.BytesIO(source.read_bytes()), map_location="cpu", weights_only=True)
        return CarriedState(saved["entries"], saved["optimizer"])
    except Exception as error:  # missing, truncated, overwritten: torch raises many kinds (see RewindReference.read)
        raise ValueError(f"{source}: the state this round carries over from the last one is unreadable "
                         f"({type(error).__name__})") from None
