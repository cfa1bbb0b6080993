"""Run by test_multinode: a two-node Ray cluster on this machine (ray.cluster_utils.Cluster),
one sweep, and a JSON line saying where the trials ran and where their files went."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ray.cluster_utils import Cluster  # noqa: E402

import ray  # noqa: E402
from ray_lth.spaces import SweepSpace  # noqa: E402
from ray_lth.tune.sweep import run_sweep  # noqa: E402


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
        nodes = set()
        for result_file in outcome.experiment_dir.glob("*/result.json"):
            nodes |= {json.loads(line)["node_id"] for line in result_file.read_text().splitlines()}
        checkpoints = sorted(str(p) for p in outcome.experiment_dir.glob("*/checkpoint_*"))
        print(json.dumps({"nodes": len(nodes), "checkpoints": checkpoints, "errors": outcome.errors}))
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:])
