"""Rewind points: the weights every IMP round restarts from (paper, Algorithm 1: (θ_p, γ_p)).

- ``pretrained``: θ_p, the pre-trained weights, with the heads γ as round 0 starts (loaded from
  the file where it holds them, else their initial draw);
- ``init``: θ_0, the random initialisation (no pre-trained weights at all);
- ``early``: the whole model after ``rewind_fraction`` of round 0's training iterations: the
  paper's θ_k% when round 0 starts from θ_0; from θ_p (weights given) it is θ_p + k% of training,
  labelled ``pretrained_early`` (``naming.rewind_point``);
- ``reinit``: a fresh random initialisation every round, heads included (the random re-init baseline).

The rewind state is the *whole* trained model: the backbone's state dict under its own names
(the names the mask uses) plus, under ``wrapper.``, every entry of the task's wrapper that is not
the backbone's (projection head, MoCo's key encoder and queue, detector and segmenter heads).
A classification model is its own wrapper, so its state is the backbone's alone.

A round after the first restores from the rewind state only the entries in the trajectory's
``rewind_scope`` and takes the others, trained, from the round before (``CarriedState``), with the
optimizer's momentum where the task keeps it: ``all`` the whole model (Algorithm 1); ``weights_file``
the entries the θ_p file holds, as the authors' simCLR and MoCo IMP reload their checkpoint (a
projection head the file lacks, MoCo's queue, keep training); ``pruned`` the prunable weights alone,
as the authors' detection IMP (its neck, heads, batch norms and first conv go on from the last round).
"""

import hashlib
import math
from dataclasses import dataclass
from typing import Collection, Dict, List, Mapping, Optional

import torch
from torch import nn

REWIND_POINTS = ("pretrained", "init", "early", "reinit")
REWIND_SCOPES = ("all", "weights_file", "pruned")


WRAPPER_PREFIX = "wrapper."


def _shared_entries(backbone: nn.Module, wrapper: nn.Module) -> Dict[str, str]:
    """wrapper key -> backbone key, for the wrapper's entries that are the backbone's own tensors
    (the wrapper reuses the backbone's modules under its own prefixes: ``query.trunk.``,
    ``model.backbone.body.``, ``model.body.``)."""
    owner = {id(t): name for name, t in backbone.state_dict(keep_vars=True).items()}
    return {key: owner[id(t)] for key, t in wrapper.state_dict(keep_vars=True).items() if id(t) in owner}


def _wrapper_own(backbone: nn.Module, wrapper: Optional[nn.Module]) -> Dict[str, torch.Tensor]:
    if wrapper is None or wrapper is backbone:
        return {}
    shared = _shared_entries(backbone, wrapper)
    return {key: t for key, t in wrapper.state_dict().items() if key not in shared}


def capture_state(backbone: nn.Module, wrapper: Optional[nn.Module] = None) -> Dict[str, torch.Tensor]:
    """A detached CPU copy of the whole state: the backbone's (weights, BN statistics, head) and
    the wrapper's own entries under ``wrapper.``."""
    state = {name: t.detach().to("cpu", copy=True) for name, t in backbone.state_dict().items()}
    state.update({WRAPPER_PREFIX + key: t.detach().to("cpu", copy=True)
                  for key, t in _wrapper_own(backbone, wrapper).items()})
    return state


def backbone_state(state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The backbone's part of a rewind state (what a ticket's model loads)."""
    return {k: v for k, v in state.items() if not k.startswith(WRAPPER_PREFIX)}


def check_state_keys(state: Mapping[str, torch.Tensor], backbone: nn.Module, wrapper: Optional[nn.Module],
                     what: str) -> None:
    """ValueError naming ``what`` when ``state`` is not a whole-model state of this backbone and
    wrapper (missing or unexpected keys, or a shape that differs)."""
    expected = {**backbone.state_dict(), **{WRAPPER_PREFIX + k: t for k, t in _wrapper_own(backbone, wrapper).items()}}
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong = sorted(f"{k}: {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
                   for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or wrong:
        old = (" (only backbone keys: a rewind state written before heads were rewound; rerun the trajectory)"
               if missing and all(k.startswith(WRAPPER_PREFIX) for k in missing) and not unexpected else "")
        raise ValueError(f"{what} is not a whole-model rewind state of this model and task{old}: "
                         f"missing {_preview(missing)}; unexpected {_preview(unexpected)}; wrong shapes {_preview(wrong)}")


@dataclass
class CarriedState:
    """What a round takes over, trained, from the round before instead of from the rewind point."""

    entries: Dict[str, torch.Tensor]  # the entries out of the rewind scope, as the last round ended
    optimizer: Optional[dict] = None  # the optimizer's state dict (momentum) then, where the task keeps it


def restored_keys(scope: str, prunable: Collection[str], from_weights: Collection[str]) -> Optional[List[str]]:
    """The entries of the rewind state that rounds after the first restore (None: all of them):
    the prunable weights (``pruned``) or the entries the θ_p file filled (``weights_file``)."""
    if scope not in REWIND_SCOPES:
        raise ValueError(f"rewind_scope={scope!r} is not allowed; choose one of {list(REWIND_SCOPES)}")
    return None if scope == "all" else sorted(prunable if scope == "pruned" else from_weights)


def carry_over(trained: Mapping[str, torch.Tensor], restored: Optional[Collection[str]],
               optimizer: Optional[dict]) -> Optional[CarriedState]:
    """What the next round takes over from ``trained`` (a captured state): the entries it does not
    restore, and the optimizer's state where the task keeps it; None when it takes nothing."""
    if restored is None and optimizer is None:
        return None
    restored = set(trained if restored is None else restored)
    return CarriedState({k: v for k, v in trained.items() if k not in restored}, optimizer)


@torch.no_grad()
def restore_state(backbone: nn.Module, state: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor],
                  wrapper: Optional[nn.Module] = None, carried: Optional[Mapping[str, torch.Tensor]] = None) -> None:
    """Load ``state`` into ``backbone`` and the ``wrapper``'s own entries, except those ``carried``
    holds (the last round's, out of the rewind scope), which come from it; then zero the pruned
    weights (in the backbone and in any copy of it the wrapper keeps, via its
    ``apply_backbone_mask``): every unpruned entry is bit-exact."""
    check_state_keys(state, backbone, wrapper, "the rewind state")
    unknown = sorted(set(carried or {}) - set(state))
    if unknown:
        raise ValueError(f"the state carried from the last round holds entries this model lacks: {_preview(unknown)}")
    state = {**state, **(carried or {})}
    backbone.load_state_dict(backbone_state(state))
    if wrapper is not None and wrapper is not backbone:
        own = {k[len(WRAPPER_PREFIX):]: v for k, v in state.items() if k.startswith(WRAPPER_PREFIX)}
        # the shared entries are the backbone's, loaded above under the backbone's names
        wrapper.load_state_dict({**wrapper.state_dict(), **own})
    apply_mask(backbone, mask, wrapper)


@torch.no_grad()
def apply_mask(model: nn.Module, mask: Mapping[str, torch.Tensor], wrapper: Optional[nn.Module] = None) -> None:
    """Zero the pruned weights of ``model`` in place, and in any copy of it ``wrapper`` keeps."""
    params = dict(model.named_parameters())
    for name, keep in mask.items():
        params[name].mul_(keep.to(params[name].device, params[name].dtype))
    mask_copies = getattr(wrapper, "apply_backbone_mask", None)
    if mask_copies is not None:
        mask_copies(mask)


def state_digest(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over every entry's name, dtype, shape and bytes: names the exact weights a round
    started from, so a run's record proves that each round restarted where it should."""
    h = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        h.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return h.hexdigest()


def early_rewind_iteration(total_iterations: int, fraction: float) -> int:
    """The iteration after which θ_k% is captured: ceil(fraction * total), at least 1."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"rewind_fraction must be in (0, 1), got {fraction}")
    return max(1, math.ceil(fraction * total_iterations))


def _preview(keys, limit: int = 6) -> str:
    keys = list(keys)
    return "none" if not keys else f"{keys[:limit]}{f' ... (+{len(keys) - limit} more)' if len(keys) > limit else ''}"
