"""Pre-trained checkpoint files in the layouts the real ones have, with random values, for tests."""

import torch

from ray_lth.models import build_model


def moco_v2_file(path, projection_dim=16, seed=3):
    """A MoCo v2 checkpoint as the authors' main_moco.py saves it (random values): encoder_q with
    its fc MLP, encoder_k (other values), queue (dim, K) and queue_ptr, under DataParallel's
    ``module.``. Returns the query encoder's backbone and head entries."""
    torch.manual_seed(seed)
    backbone = {k: v for k, v in build_model("resnet8", 10).state_dict().items() if not k.startswith("fc.")}
    head = {"fc.0.weight": torch.randn(64, 64), "fc.0.bias": torch.randn(64),
            "fc.2.weight": torch.randn(projection_dim, 64), "fc.2.bias": torch.randn(projection_dim)}
    state = {f"module.encoder_q.{k}": v for k, v in {**backbone, **head}.items()}
    state.update({f"module.encoder_k.{k}": torch.randn_like(v.float()).to(v.dtype) for k, v in {**backbone, **head}.items()})
    state["module.queue"] = torch.randn(projection_dim, 96)
    state["module.queue_ptr"] = torch.zeros(1, dtype=torch.long)
    torch.save({"epoch": 800, "arch": "resnet8", "state_dict": state, "optimizer": {}}, path)
    return backbone, head
