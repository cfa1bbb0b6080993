import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ray_lth.pretrain import EMBEDDED_RECIPE, pretrain  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)  # CI has 2 cores; keeps timing and results stable


@pytest.fixture(scope="session")
def resnet8_weights(tmp_path_factory):
    """A small θ_p: resnet8 pre-trained for one epoch on the procedural shapes set."""
    path = tmp_path_factory.mktemp("weights") / "resnet8-shapes.pt"
    pretrain("resnet8", path, {**EMBEDDED_RECIPE, "epochs": 1}, device="cpu")
    return path


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """One local Ray instance for the whole session (2 CPUs, no dashboard); launcher
    subprocesses join it with --address, so each test pays no Ray start-up."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=str(tmp_path_factory.mktemp("ray")))
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()
