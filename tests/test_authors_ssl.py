"""The self-supervised tasks compute what the paper's code (VITA-Group/CV_LTH_Pre-training,
SimCLR/ and MoCo/) computes, each checked against a reference written out here."""

import numpy as np
import pytest
import torch

from ray_lth.models import build_model, get_model_spec
from ray_lth.spaces import load_space
from ray_lth.tasks import build_task
from ray_lth.tasks.ssl.contrastive import augmentation
from ray_lth.tasks.ssl.retrieval import contrastive_hits, queue_contrastive_hits
from ray_lth.tasks.ssl.views import evaluation_view_batches


# --- issue 19, items 3, 4 and 8: the simCLR metric, the simCLR augmentation, the MoCo metric ---

def authors_contrastive_top1_hits(a: np.ndarray, b: np.ndarray) -> int:
    """SimCLR/utils.py contrastive_acc, top-1, in numpy: the batch laid out as the loader stacks it,
    [a0, b0, a1, b1, ...]; cosines (norm product clamped at 1e-8) with each one's own set to 0;
    rows swapped pairwise so that row i holds its partner's similarities, and a hit where that
    row's argmax is i."""
    x = np.empty((2 * len(a), a.shape[1]))
    x[0::2], x[1::2] = a, b
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    similarity = x @ x.T / np.maximum(norms * norms.T, 1e-8)
    np.fill_diagonal(similarity, 0.0)
    partner = np.arange(len(x)) ^ 1
    return int((similarity[partner].argmax(axis=1) == np.arange(len(x))).sum())


def moco_k_plus_1_hits(q: np.ndarray, k: np.ndarray, queue: np.ndarray) -> int:
    """MoCo's (K+1)-way top-1 in numpy: logits [q·k, q·queue_1..K] / T of unit q and k, a hit
    where the positive (column 0) is the argmax."""
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    k = k / np.linalg.norm(k, axis=1, keepdims=True)
    logits = np.concatenate([(q * k).sum(axis=1, keepdims=True), q @ queue.T], axis=1) / 0.2
    return int((logits.argmax(axis=1) == 0).sum())


def test_simclr_contrastive_top1_ranks_as_the_authors_code_with_its_own_zero_a_candidate():
    # image 0's two views are at cosine -0.2, the others at about -0.5 from both: every cosine of
    # theirs is negative, so their own 0 wins, two misses under the authors' rule (Eq. (2), which
    # leaves an anchor out of its own ranking, would count two hits); images 1-3 hit and miss
    a = np.array([[1.0, 0.0, 0.0], [-0.8, -1.0, 1.0], [-0.9, -0.9, -0.2], [-0.7, -1.1, -1.0]])
    b = np.array([[-0.2, 0.98, 0.0], [-0.8, -0.9, 0.7], [-0.8, -1.0, -0.9], [-0.8, -1.0, -0.1]])
    expected = authors_contrastive_top1_hits(a, b)
    hits = contrastive_hits(torch.tensor(a), torch.tensor(b))  # (hits of a0..a3, hits of b0..b3)
    assert hits.shape == (8,) and int(hits.sum()) == expected == 2
    assert not hits[0] and not hits[4] and hits[1] and hits[5]


def test_simclr_scores_the_backbone_features_by_the_authors_ranking_by_default():
    # SimCLR/main.py: train.val_cacc(val_loader, model, ..., mlp=False), fc -> nn.Identity
    task = build_task("simclr", dataset="digits", train_images=64, eval_images=100, retrieval_batch_size=32)
    torch.manual_seed(0)
    model = task.wrap(build_model("resnet8", 10), get_model_spec("resnet8")).eval()
    hits = {"backbone": 0, "projection": 0}
    anchors = 0
    with torch.no_grad():
        for view_a, view_b in evaluation_view_batches(task.test_pairs, 32):
            backbone = model.trunk(torch.cat([view_a, view_b])).double().numpy()
            projection = model(torch.cat([view_a, view_b])).double().numpy()
            n = len(view_a)
            hits["backbone"] += authors_contrastive_top1_hits(backbone[:n], backbone[n:])
            hits["projection"] += authors_contrastive_top1_hits(projection[:n], projection[n:])
            anchors += 2 * n
    metrics = task.evaluate(model, torch.device("cpu"))
    assert task.metric == "contrastive_top1"
    assert metrics["contrastive_top1"] == pytest.approx(hits["backbone"] / anchors)
    assert hits["backbone"] != hits["projection"]  # the choice of features shows in the score
    projected = build_task("simclr", dataset="digits", train_images=64, eval_images=100, retrieval_batch_size=32,
                           eval_features="projection")
    assert projected.evaluate(model, torch.device("cpu"))["contrastive_top1"] == pytest.approx(
        hits["projection"] / anchors)


def test_simclr_eq2_on_projections_stays_reachable():
    old = build_task("simclr", dataset="digits", train_images=64, eval_images=64, retrieval_batch_size=64,
                     eval_metric="retrieval_top1", eval_features="projection")
    torch.manual_seed(0)
    model = old.wrap(build_model("resnet8", 10), get_model_spec("resnet8")).eval()
    (view_a, view_b), = evaluation_view_batches(old.test_pairs, 64)
    with torch.no_grad():
        z = torch.nn.functional.normalize(model(torch.cat([view_a, view_b])).double(), dim=1).numpy()
    similarity = z @ z.T
    np.fill_diagonal(similarity, -np.inf)  # Eq. (2): an anchor is not among its own candidates
    expected = (similarity.argmax(axis=1) == (np.arange(128) + 64) % 128).mean()
    metrics = old.evaluate(model, torch.device("cpu"))
    assert old.metric == "retrieval_top1" and metrics["retrieval_top1"] == pytest.approx(expected)


def describe(transform) -> tuple:
    """A torchvision v2 step as (name, its settings), in the authors' torchvision v1 terms."""
    name = type(transform).__name__
    if name == "RandomResizedCrop":
        return name, tuple(transform.size), tuple(transform.scale), tuple(transform.ratio)
    if name == "RandomApply":
        return (name, transform.p) + tuple(describe(t) for t in transform.transforms)
    if name == "ColorJitter":  # v1 and v2 store a strength s as the range (1 - s, 1 + s); hue as (-h, h)
        return name, tuple(round(r[1] - 1, 6) for r in (transform.brightness, transform.contrast,
                                                         transform.saturation)) + (transform.hue[1],)
    if name in ("RandomHorizontalFlip", "RandomGrayscale"):
        return name, transform.p
    if name == "ToDtype" and transform.dtype == torch.float32 and transform.scale:
        return ("ToTensor",)  # uint8 -> float in [0, 1], as v1's ToTensor
    return (name,)


# SimCLR/args.py dataloader_setup, tfs_train (the val loader's too); `normalize` is defined, unused
AUTHORS_SIMCLR_VIEWS = [
    ("RandomResizedCrop", (224, 224), (0.08, 1.0), (3 / 4, 4 / 3)),
    ("RandomHorizontalFlip", 0.5),
    ("RandomApply", 0.8, ("ColorJitter", (0.8, 0.8, 0.8, 0.2))),  # ColorJitter(0.8, 0.8, 0.8, 0.2)
    ("RandomGrayscale", 0.2),
    ("ToTensor",),
]


def test_simclr_paper_space_makes_views_as_the_authors_code_without_blur(tmp_path):
    weights = tmp_path / "theta_sim.pt"
    weights.touch()
    # the space's paper-scale --set line (its docstring)
    space = load_space("pretrain_simclr").with_overrides(dict(weights=str(weights), image_size=224, normalize="none"))
    config = space.validate()[0]
    views = augmentation(config.task_options, config.image_size)
    assert [describe(t) for t in views.transforms] == AUTHORS_SIMCLR_VIEWS
    # Chen et al.'s recipe, today's until now, by name: blurred at 224 px
    chen = augmentation({**config.task_options, "augmentation": "simclr"}, 224)
    assert [describe(t)[0] for t in chen.transforms] == [
        "RandomResizedCrop", "RandomHorizontalFlip", "RandomApply", "RandomGrayscale", "RandomApply", "ToTensor"]
    assert describe(chen.transforms[4])[2][0] == "GaussianBlur"
    with pytest.raises(ValueError, match="augmentation='blurry' is not allowed"):
        build_task("simclr", augmentation="blurry")


def test_moco_k_plus_1_accuracy_matches_numpy_on_fixed_tensors():
    generator = np.random.default_rng(3)
    q = generator.normal(size=(6, 4))
    k = q + 0.9 * generator.normal(size=(6, 4))
    queue = generator.normal(size=(10, 4))
    queue /= np.linalg.norm(queue, axis=1, keepdims=True)
    expected = moco_k_plus_1_hits(q, k, queue)
    assert 0 < expected < 6
    hits = queue_contrastive_hits(torch.tensor(q), torch.tensor(k), torch.tensor(queue))
    assert hits.shape == (6,) and int(hits.sum()) == expected


def test_moco_scores_query_against_key_and_an_evaluation_queue_as_the_authors_test():
    # MoCo/main_moco_imp.py test(): a fresh random unit queue, encoder_q on view 0, encoder_k on
    # view 1 (eval mode, no shuffling), the queue taking each batch's keys at its pointer
    size = 32
    task = build_task("moco", dataset="digits", train_images=64, eval_images=48, retrieval_batch_size=16,
                      queue_size=size, projection_dim=8)
    torch.manual_seed(0)
    model = task.wrap(build_model("resnet8", 10), get_model_spec("resnet8")).eval()
    with torch.no_grad():  # the key encoder differs from the query, as after training
        for p in model.key.parameters():
            p.add_(0.05 * torch.randn_like(p))
    training_queue = model.queue.clone()
    queue = torch.nn.functional.normalize(torch.randn(size, 8, generator=torch.Generator().manual_seed(0)), dim=1)
    queue, pointer, hits = queue.double().numpy().copy(), 0, 0
    with torch.no_grad():
        for view_a, view_b in evaluation_view_batches(task.test_pairs, 16):
            q, k = model.query(view_a).double().numpy(), model.key(view_b).double().numpy()
            hits += moco_k_plus_1_hits(q, k, queue)
            queue[pointer:pointer + len(k)] = k / np.linalg.norm(k, axis=1, keepdims=True)
            pointer = (pointer + len(k)) % size
    metrics = task.evaluate(model, torch.device("cpu"))
    assert task.metric == "contrastive_top1"
    assert metrics["contrastive_top1"] == pytest.approx(hits / 48)
    assert metrics["contrastive_chance"] == pytest.approx(1 / 33)
    assert torch.equal(model.queue, training_queue)  # training's queue is neither read nor changed
    old = build_task("moco", dataset="digits", train_images=64, eval_images=48, retrieval_batch_size=16,
                     queue_size=size, projection_dim=8, eval_metric="retrieval_top1")
    assert set(old.evaluate(model, torch.device("cpu"))) == {"retrieval_top1", "retrieval_chance",
                                                             "retrieval_top1_query_key"}
    with pytest.raises(ValueError, match="eval_metric='top5' is not allowed"):
        build_task("moco", eval_metric="top5")
