"""Model builders and the rule for which parameters IMP may prune."""

from .registry import MODELS, ModelSpec, build_model, get_model_spec
from .prunable import prunable_parameter_names, prunable_parameters, replace_head

__all__ = [
    "MODELS",
    "ModelSpec",
    "build_model",
    "get_model_spec",
    "prunable_parameter_names",
    "prunable_parameters",
    "replace_head",
]
