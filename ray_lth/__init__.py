"""ray_lth: lottery tickets in pre-trained vision models, searched as Ray Tune trials.

The IMP core (models, masks, pruning, rewinding, training, tasks, matching) imports no Ray;
Ray lives only in ``ray_lth.tune`` and ``launchers/``.
"""

__version__ = "0.1.0"
