"""Run by tests/test_s3_sweep.py's two-node test: a two-node Ray cluster on this machine
(ray.cluster_utils.Cluster), one sweep, and a JSON line saying where the trials ran and where
their files went (the storage: an object-store URI, or any folder both nodes see)."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ray.cluster_utils import Cluster  # noqa: E402

import ray  # noqa: E402
from ray_lth.spaces import SweepSpace  # noqa: E402
from ray_lth.storage import location  # noqa: E402
from ray_lth.tune.sweep import run_sweep  # noqa: E402


# the report line: Ray may forward worker log lines to stdout after it
REPORT_MARKER = "multinode report: "


def main(weights: str, storage: str, temp_dir: str) -> None:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "temp_dir": temp_dir,
                                                            "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address)
    try:
        space = SweepSpace("two nodes", fixed=dict(model="resnet8", task="digits", rewind="pretrained", rounds=1,
                                                   epochs=1, weights=weights, device="cpu"),
                           grid=dict(seed=[0, 1]), weights="none", patience=100)
        outcome = run_sweep(space, storage, "multinode", verbose=0)
        experiment = location(outcome.experiment)
        nodes, checkpoints, masks = set(), [], []
        for trial in [name for name in experiment.list() if (experiment / name).is_dir()]:
            if (experiment / trial / "result.json").exists():
                lines = (experiment / trial / "result.json").read_text().splitlines()
                nodes |= {json.loads(line)["node_id"] for line in lines}
            checkpoints += [str(experiment / trial / c) for c in (experiment / trial).list() if c.startswith("checkpoint_")]
            masks += [str(experiment / trial / "trajectory" / m) for m in (experiment / trial / "trajectory").list()
                      if m.startswith("mask_round_")]
        print(REPORT_MARKER + json.dumps({"nodes": len(nodes), "checkpoints": sorted(checkpoints), "masks": sorted(masks),
                          "errors": outcome.errors}))
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:])
