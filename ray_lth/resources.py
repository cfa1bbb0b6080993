"""What one trial reserves on a Ray cluster, as plain data (no Ray here): every kind of space
states its trial's reservation (``trial_resources``) and what one trial needs in all
(``resource_needs``), and ``unmet_need`` says, before any trial starts, the one that cannot fit.
"""

from typing import Dict, List, Mapping, NamedTuple, Optional


class ResourceNeed(NamedTuple):
    resource: str  # "CPU" or "GPU", as ray.cluster_resources() names them
    amount: float  # what one trial needs of it in all (its workers included)
    flag: str  # the launcher flag that sets it, for the message


def per_trial(cpus: float, gpus: float) -> Dict[str, float]:
    return {"cpu": cpus, "gpu": gpus}


def per_worker() -> Dict[str, float]:
    """A data-parallel trial's own reservation: it holds the trajectory and prunes between rounds,
    next to nothing, so it reserves no CPU and its Ray Train workers can take every core
    (``--workers-per-trial 2`` on a 2-core machine). Ray refuses an empty reservation: one byte."""
    return {"cpu": 0, "gpu": 0, "memory": 1}


def per_trial_needs(cpus: float, gpus: float) -> List[ResourceNeed]:
    return [ResourceNeed("GPU", gpus, "--gpus-per-trial"), ResourceNeed("CPU", cpus, "--cpus-per-trial")]


class PerTrialResources:
    """For a kind of space whose trials hold their own ``cpus_per_trial`` and ``gpus_per_trial``."""

    cpus_per_trial: float
    gpus_per_trial: float

    def trial_resources(self) -> Dict[str, float]:
        return per_trial(self.cpus_per_trial, self.gpus_per_trial)

    def resource_needs(self) -> List[ResourceNeed]:
        return per_trial_needs(self.cpus_per_trial, self.gpus_per_trial)


def unmet_need(needs: List[ResourceNeed], available: Mapping[str, float]) -> Optional[str]:
    """The message for the first need the cluster cannot meet (its trials would stay PENDING
    forever), or None."""
    for need in needs:
        have = available.get(need.resource, 0)
        if need.amount > have:
            return (f"each trial needs {need.amount:g} {need.resource} ({need.flag}) but the Ray cluster has "
                    f"{have:g}: lower it, or connect to a cluster that has them (--address)")
    return None
