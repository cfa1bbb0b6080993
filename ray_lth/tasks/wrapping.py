"""The model a round trains around the backbone IMP prunes, and the heads a θ_p file fills in it.

A task may ``wrap`` the backbone into the model it trains (a projection head, a detector), sharing
the backbone's parameters, so the mask stays the backbone's; the rewind state holds the wrapper's
own entries too (``rewind.capture_state``). A wrapper keeping a copy of the backbone (MoCo's key
encoder) masks it in ``apply_backbone_mask(mask)``. A task names what its wrapper adds in
``heads`` and may load them from a θ_p file (``load_pretrained_heads``) where they are γ_p.
"""

from typing import List, Tuple

from .registry import TASKS


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
