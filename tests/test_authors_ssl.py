"""The simCLR and MoCo v2 pre-training tasks as the authors' code computes them (issue 19), each
pinned against a reference written here from their code: SimCLR/main.py, SimCLR/pruning.py,
SimCLR/optimizer/lars.py, SimCLR/args.py, SimCLR/utils.py, MoCo/main_moco_imp.py."""

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

import ray_lth.imp as imp
from checkpoint_files import moco_v2_file
from ray_lth.config import ImpConfig
from ray_lth.imp import run_trajectory
from ray_lth.models import build_model, get_model_spec
from ray_lth.models.prunable import prunable_parameter_names
from ray_lth.spaces import load_space
from ray_lth.tasks import build_task
from ray_lth.tasks.ssl.contrastive import augmentation
from ray_lth.tasks.ssl.losses import nt_xent, nt_xent_authors
from ray_lth.tasks.ssl.retrieval import contrastive_hits, queue_contrastive_hits
from ray_lth.tasks.ssl.views import evaluation_view_batches
from ray_lth.train import OPTIMIZERS, SCHEDULES, TrainHparams, train_masked
from ray_lth.trajectory_state import TrajectoryState


# ---- items 1 and 7: round 0 prunes θ_p untrained when the file was pre-trained on the task ----
# (wt-round0: simCLR / MoCo round order, the pruning set)

SSL = dict(model="resnet8", rounds=1, epochs=1, lr=0.02, device="cpu", prune_fraction=0.2, rewind="pretrained",
           train_images=64, eval_images=64, retrieval_batch_size=32, batch_size=32, projection_dim=16)
SSL_TASKS = {"simclr": dict(task="simclr"), "moco": dict(task="moco", queue_size=96, key_momentum=0.9)}


def _backbone(seed):
    torch.manual_seed(seed)
    return {k: v for k, v in build_model("resnet8", 10).state_dict().items() if not k.startswith("fc.")}


def _simclr_file(path, seed=11):
    """simclr-converter's layout: torchvision keys (the linear-eval fc included) under 'state_dict'."""
    backbone = _backbone(seed)
    torch.save({"state_dict": {**backbone, "fc.weight": torch.randn(10, 64), "fc.bias": torch.zeros(10)}}, path)
    return backbone


def _moco_v2_file(path, seed=12):
    """main_moco.py's layout: encoder_q (with its MLP head), encoder_k, queue under DataParallel's
    'module.'; returns the query encoder's backbone."""
    return moco_v2_file(path, seed=seed)[0]


def _config(task, weights, **values):
    return ImpConfig.from_dict({**SSL, **SSL_TASKS[task], "weights": str(weights), **values})


def _authors_first_mask(theta_p, fraction):
    """SimCLR/pruning.py's first mask: global L1 over every Conv2d weight but the stem's conv1,
    the smallest ``fraction`` pruned; as a threshold found by sorting θ_p's magnitudes."""
    model = build_model("resnet8", 10)
    convs = [name for name, module in model.named_modules() if isinstance(module, nn.Conv2d) and name != "conv1"]
    weights = {f"{name}.weight": theta_p[f"{name}.weight"] for name in convs}
    magnitudes = torch.cat([w.abs().flatten() for w in weights.values()]).sort().values
    threshold = magnitudes[round(fraction * len(magnitudes)) - 1]
    return {name: w.abs() > threshold for name, w in weights.items()}


@pytest.mark.parametrize("task, write", [("simclr", _simclr_file), ("moco", _moco_v2_file)])
def test_a_file_pretrained_on_the_task_is_pruned_before_any_training_under_weights_format_auto(task, write, tmp_path):
    theta_p = write(tmp_path / "theta_p.pth")
    config = _config(task, tmp_path / "theta_p.pth")  # weights_format: the default, auto
    round_0, round_1 = list(run_trajectory(config))
    assert (round_0.record.metrics["iterations"], round_0.record.epochs) == (0, 0)
    expected = _authors_first_mask(theta_p, 0.2)
    assert sorted(round_0.state.mask) == sorted(expected)
    for name, keep in expected.items():
        assert torch.equal(round_0.state.mask[name], keep), name
    assert round_1.record.metrics["iterations"] > 0 and round_1.record.epochs == 1
    assert (config.weights_format, config.train_dense) == ("auto", False)


def test_which_files_make_round_0_score_theta_p_and_train_dense_keeps_a_trained_dense_round(tmp_path, resnet8_weights):
    _simclr_file(tmp_path / "simclr.pth")
    _moco_v2_file(tmp_path / "moco.pth.tar")
    assert not _config("simclr", tmp_path / "simclr.pth", weights_format="simclr").train_dense
    assert not _config("moco", tmp_path / "moco.pth.tar", weights_format="moco").train_dense
    # another task's file, or θ_p of a supervised task (torchvision format): round 0 trains
    assert _config("simclr", tmp_path / "moco.pth.tar").train_dense
    assert _config("moco", tmp_path / "simclr.pth").train_dense
    assert _config("simclr", resnet8_weights).train_dense
    # the named way back to a trained dense round 0
    assert _config("simclr", tmp_path / "simclr.pth", train_dense=True).train_dense
    assert _config("moco", tmp_path / "moco.pth.tar", train_dense=True).train_dense
    (tmp_path / "garbage.pth").write_bytes(b"\x00 not a torch file" * 8)  # refused by the field's name
    with pytest.raises(ValueError, match=r"^weights: .*garbage.pth: not a readable torch weights file"):
        _config("simclr", tmp_path / "garbage.pth")


def test_the_pruning_set_is_the_authors_every_conv_but_conv1_no_linear_layer():
    """SimCLR/pruning.py (and MoCo/utils.py with conv1=False) prune nn.Conv2d weights but the one
    named conv1, downsample convs included; no Linear (their projection head fc.fc1/fc.fc2)."""
    model = build_model("resnet50", 1000)
    authors = [f"{name}.weight" for name, module in model.named_modules()
               if isinstance(module, nn.Conv2d) and name != "conv1"]
    assert prunable_parameter_names(model, get_model_spec("resnet50").never_pruned) == authors
    assert "layer1.0.downsample.0.weight" in authors


# ---- item 2: LARS, as the authors' SimCLR/optimizer/lars.py with SimCLR/args.py's settings ----

def _authors_lars(params, grads_per_step, lr, momentum, weight_decay, eta=1e-3):
    """Their step, per parameter tensor (no exclusion of BN or biases): local = η‖w‖/(‖g‖ + wd‖w‖)
    (1 where either norm < 1e-15); buf = m·buf + lr·local·(g + wd·w); w -= buf."""
    params = [np.array(p, dtype=np.float64) for p in params]
    buffers = [np.zeros_like(p) for p in params]
    for grads in grads_per_step:
        for i, g in enumerate(grads):
            w_norm, g_norm = np.linalg.norm(params[i]), np.linalg.norm(g)
            local = eta * w_norm / (g_norm + weight_decay * w_norm) if min(w_norm, g_norm) >= 1e-15 else 1.0
            buffers[i] = momentum * buffers[i] + lr * local * (g + weight_decay * params[i])
            params[i] = params[i] - buffers[i]
    return params


def test_lars_takes_the_authors_steps_bn_and_biases_included():
    rng = np.random.default_rng(0)
    start = [rng.normal(size=(3, 4)), rng.normal(size=4), rng.normal(size=5)]  # conv-like, bias/BN-like, no grad
    grads = [[rng.normal(size=(3, 4)), rng.normal(size=4) * 0.1, np.zeros(5)] for _ in range(3)]
    hparams = TrainHparams(epochs=1, batch_size=1, lr=0.5, momentum=0.9, weight_decay=0.05, optimizer="lars")
    params = [nn.Parameter(torch.tensor(p, dtype=torch.float64)) for p in start]
    optimizer = OPTIMIZERS["lars"](params, hparams)
    for step in grads:
        for p, g in zip(params, step):
            p.grad = torch.tensor(g, dtype=torch.float64)
        optimizer.step()
    expected = _authors_lars(start, grads, lr=0.5, momentum=0.9, weight_decay=0.05)
    for p, e in zip(params, expected):
        np.testing.assert_allclose(p.detach().numpy(), e, rtol=1e-12, atol=1e-14)
    # the trust ratio mattered: plain SGD with the same settings lands elsewhere
    assert not np.allclose(expected[0], start[0] - 0.5 * (grads[0][0] + 0.05 * start[0]), atol=1e-3)


def test_the_simclr_schedule_is_the_authors_lars_and_sgd_stays_a_choice():
    simclr = SCHEDULES["simclr"]
    assert (simclr.optimizer, simclr.lr, simclr.weight_decay, simclr.momentum) == ("lars", 1e-4, 1e-6, 0.9)
    assert (simclr.lr_schedule, simclr.milestones, simclr.warmup_iters, simclr.warmup_epochs) == ("step", (), 0, 0)
    table_1 = ImpConfig.from_dict({"task": "simclr", "schedule": "simclr", "optimizer": "sgd", "weight_decay": 1e-4,
                                   "rewind": "init"})
    assert (table_1.train.optimizer, table_1.train.weight_decay) == ("sgd", 1e-4)
    with pytest.raises(ValueError, match=r"optimizer='adam' is not allowed; choose one of \['lars', 'sgd'\]"):
        ImpConfig.from_dict({"task": "simclr", "optimizer": "adam", "rewind": "init"})


class _Regression:
    """A task of fixed random batches for a linear model: enough for train_masked."""

    def __init__(self):
        generator = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(32, 6, generator=generator), torch.randn(32, 3, generator=generator)

    def batches_per_epoch(self, batch_size):
        return len(self.x) // batch_size

    def train_batches(self, batch_size, generator):
        return [(self.x[i:i + batch_size], self.y[i:i + batch_size]) for i in range(0, len(self.x), batch_size)]

    def loss(self, model, batch, device):
        return nn.functional.mse_loss(model(batch[0]), batch[1])


def test_masked_training_with_lars_keeps_pruned_weights_zero_and_moves_the_rest():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 3))
    keep = torch.rand(3, 6) > 0.5
    before = model[0].weight.detach().clone()
    hparams = TrainHparams(epochs=3, batch_size=8, lr=1.0, weight_decay=1e-2, optimizer="lars")
    train_masked(model, _Regression(), hparams, {"0.weight": keep}, torch.device("cpu"), torch.Generator())
    weight = model[0].weight.detach()
    assert torch.all(weight[~keep] == 0)
    assert torch.all(weight[keep] != before[keep])


# ---- item 5: the authors' simCLR loss, -log of the mean positive ratio ----

def _authors_loss(z_a, z_b, t):
    """SimCLR/utils.py nt_xent on their interleaved batch (view a, view b of image 0, then of 1 ...):
    ratio_j = exp(s(pos_j, j)/t) / (Σ_i exp(s(i, j)/t) - exp(1/t)); loss = -log(mean_j ratio_j)."""
    x = np.empty((2 * len(z_a), z_a.shape[1]))
    x[0::2], x[1::2] = z_a, z_b
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    e = np.exp(x @ x.T / (norms * norms.T) / t)
    partner = np.arange(len(x)) ^ 1  # 0<->1, 2<->3, ...
    ratios = e[partner, np.arange(len(x))] / (e.sum(axis=0) - math.exp(1 / t))
    return -math.log(ratios.mean())


@pytest.mark.parametrize("t", [0.1, 0.5, 2.0])
def test_the_authors_loss_matches_their_formula_and_differs_from_nt_xent(t):
    rng = np.random.default_rng(1)
    z_a, z_b = rng.normal(size=(6, 5)), rng.normal(size=(6, 5))
    z_b[:3] = z_a[:3] + 0.1 * rng.normal(size=(3, 5))  # some positives close, some not
    expected = _authors_loss(z_a, z_b, t)
    ours = nt_xent_authors(torch.tensor(z_a), torch.tensor(z_b), t).item()
    assert ours == pytest.approx(expected, rel=1e-5)
    assert abs(nt_xent(torch.tensor(z_a), torch.tensor(z_b), t).item() - expected) > 1e-2


def test_the_simclr_task_trains_with_the_loss_option_and_the_paper_spaces_choose_the_authors():
    task = build_task("simclr", image_size=8, train_images=8, eval_images=8, loss="authors")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
    view_a, view_b = torch.rand(5, 3, 8, 8), torch.rand(5, 3, 8, 8)
    with torch.no_grad():
        z_a, z_b = model(view_a).double().numpy(), model(view_b).double().numpy()
        loss = task.loss(model, (view_a, view_b), torch.device("cpu")).item()
    assert loss == pytest.approx(_authors_loss(z_a, z_b, 0.5), rel=1e-5)
    with pytest.raises(ValueError, match=r"loss='infonce' is not allowed; choose one of \['authors', 'nt_xent'\]"):
        ImpConfig.from_dict({"task": "simclr", "loss": "infonce", "rewind": "init"})
    assert load_space("pretrain_simclr").fixed["loss"] == "authors"
    assert load_space("simclr_temperature").upstream["loss"] == "authors"


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
    torch.save(build_model("resnet20", 10).state_dict(), weights)  # read for its format, not loaded here
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


# ---- items 6 and 9: what a round restores from θ_p and what it carries over, trained ----
# (wt-carry) SimCLR/main.py builds the optimizer once, before its round loop, and
# SimCLR/pruning.py prunning_and_rewind reloads only the keys sim_ckpt holds (a projection head
# the file lacks keeps training); MoCo/main_moco_imp.py builds its SGD once and pruning_rewind
# reloads encoder_q and encoder_k from the file (MoCo/utils.py loading_weight), never the queue or
# queue_ptr. The references: the wrapped model's own state_dict() and the optimizer's own
# momentum buffers, read when training starts and ends (not through ray_lth's rewind code).

CARRY_SSL = dict(model="resnet8", rewind="pretrained", rounds=1, epochs=1, lr=0.02, device="cpu", prune_fraction=0.5,
                 train_images=64, eval_images=64, retrieval_batch_size=32, batch_size=32)


@pytest.fixture
def round_ends(monkeypatch):
    """Per call of ``train_masked``: the wrapped model's state and every parameter's momentum
    (by its name in the wrapped model) before the first optimizer step and after the last."""
    rounds = []
    current = {}
    real = imp.train_masked

    def momentum(optimizer):
        return {current["names"][p]: optimizer.state[p]["momentum_buffer"].clone()
                for group in optimizer.param_groups for p in group["params"]
                if p in optimizer.state and optimizer.state[p].get("momentum_buffer") is not None}

    def before_step(optimizer, args, kwargs):
        current.setdefault("momentum_before", momentum(optimizer))

    def after_step(optimizer, args, kwargs):
        current["momentum_after"] = momentum(optimizer)

    def recording(model, *args, **kwargs):
        current.clear()
        current["names"] = {p: n for n, p in model.named_parameters()}
        start = {k: v.detach().clone() for k, v in model.state_dict().items()}
        stats = real(model, *args, **kwargs)
        rounds.append({"start": start, "end": {k: v.detach().clone() for k, v in model.state_dict().items()},
                       "momentum_before": current["momentum_before"], "momentum_after": current["momentum_after"]})
        return stats

    handles = [register_optimizer_step_pre_hook(before_step), register_optimizer_step_post_hook(after_step)]
    monkeypatch.setattr(imp, "train_masked", recording)
    yield rounds
    for handle in handles:
        handle.remove()


def _pruned_name(key, mask):
    """The backbone weight a wrapper key names (``trunk.layer1.0.conv1.weight``, MoCo's
    ``key.trunk.…`` copy), or None."""
    names = [n for n in mask if key.endswith("." + n)]
    return names[0] if names else None


def _masked(value, key, mask):
    name = _pruned_name(key, mask)
    return value if name is None else value * mask[name].to(value.dtype)



def test_ssl_tasks_rewind_what_theta_p_holds_and_carry_the_momentum_by_default(resnet8_weights):
    for task in ("simclr", "moco"):
        config = ImpConfig.from_dict({**CARRY_SSL, "task": task, "weights": str(resnet8_weights)})
        assert (config.rewind_scope, config.carry_optimizer) == ("weights_file", True)
        assert config.to_dict()["rewind_scope"] == "weights_file"  # what a sweep's rows record
        # nothing to hold without a file, and a fresh draw every round carries nothing: the whole model
        assert ImpConfig.from_dict({**CARRY_SSL, "task": task, "rewind": "init"}).rewind_scope == "all"
        reinit = ImpConfig.from_dict({**CARRY_SSL, "task": task, "rewind": "reinit", "weights": str(resnet8_weights)})
        assert (reinit.rewind_scope, reinit.carry_optimizer) == ("all", False)
    digits = ImpConfig.from_dict({"model": "resnet8", "task": "digits", "weights": str(resnet8_weights)})
    assert (digits.rewind_scope, digits.carry_optimizer) == ("all", False)
    with pytest.raises(ValueError, match=r"rewind_scope='everything' is not allowed; choose one of "
                                         r"\['all', 'pruned', 'weights_file'\]"):
        ImpConfig.from_dict({**CARRY_SSL, "task": "simclr", "weights": str(resnet8_weights),
                             "rewind_scope": "everything"})
    with pytest.raises(ValueError, match=r"rewind_scope='weights_file' .*give weights=<file>"):
        ImpConfig.from_dict({**CARRY_SSL, "task": "simclr", "rewind": "init", "rewind_scope": "weights_file"})
    with pytest.raises(ValueError, match=r"rewind='reinit' .*rewind_scope must be 'all', got 'pruned'"):
        ImpConfig.from_dict({**CARRY_SSL, "task": "simclr", "rewind": "reinit", "weights": str(resnet8_weights),
                             "rewind_scope": "pruned"})
    with pytest.raises(ValueError, match=r"carry_optimizer must be true or false, got 'yes'"):
        ImpConfig.from_dict({**CARRY_SSL, "task": "simclr", "weights": str(resnet8_weights), "carry_optimizer": "yes"})


def test_a_simclr_head_the_file_lacks_trains_on_across_rounds_and_so_does_the_momentum(resnet8_weights, round_ends):
    # resnet8_weights holds a torchvision backbone and no projection head, like the converted
    # resnet50-1x.pth: prunning_and_rewind reloads the backbone only (fc.fc1/fc.fc2 are not in it)
    results = list(run_trajectory(ImpConfig.from_dict({**CARRY_SSL, "task": "simclr",
                                                       "weights": str(resnet8_weights)})))
    round_0, round_1 = round_ends
    mask = results[0].state.mask
    restored = {k for k in round_0["start"] if k.startswith("trunk.")}  # the file's backbone
    carried = {k for k in round_0["start"] if k.startswith("projector.")}  # simCLR's Projection_head
    assert restored | carried == set(round_1["start"]) and carried
    for key in restored:
        assert torch.equal(round_1["start"][key], _masked(round_0["start"][key], key, mask)), key
    for key in carried:  # the trained head of round 0, not its draw
        assert torch.equal(round_1["start"][key], round_0["end"][key]), key
        assert not torch.equal(round_1["start"][key], round_0["start"][key]), key
    # the momentum goes on from round 0's last step, the newly pruned weights' zeroed
    before, after = round_1["momentum_before"], round_0["momentum_after"]
    assert before.keys() == after.keys() and any(_pruned_name(k, mask) for k in before)
    for name in before:
        assert torch.equal(before[name], _masked(after[name], name, mask)), name
    assert any(bool((~mask[_pruned_name(n, mask)]).any() & (after[n] != 0).any()) for n in after if _pruned_name(n, mask))


def test_moco_rewinds_both_encoders_to_the_file_and_carries_the_queue_and_momentum(tmp_path, round_ends):
    moco_v2_file(tmp_path / "moco_v2.pth.tar")
    # train_dense: round 0 trains here, so that it leaves a queue and momentum behind
    config = ImpConfig.from_dict({**CARRY_SSL, "task": "moco", "weights": str(tmp_path / "moco_v2.pth.tar"),
                                  "queue_size": 96, "key_momentum": 0.9, "projection_dim": 16, "train_dense": True})
    results = list(run_trajectory(config))
    round_0, round_1 = round_ends
    mask = results[0].state.mask
    # pruning_rewind: loading_weight fills encoder_q (trunk and MLP) and encoder_k from the file
    restored = {k for k in round_0["start"] if k.startswith(("query.", "key."))}
    carried = {"queue", "queue_pointer"}  # data, never in the reload
    assert restored | carried == set(round_1["start"])
    for key in restored:
        assert torch.equal(round_1["start"][key], _masked(round_0["start"][key], key, mask)), key
    for key in carried:
        assert torch.equal(round_1["start"][key], round_0["end"][key]), key
        assert not torch.equal(round_1["start"][key], round_0["start"][key]), key
    before, after = round_1["momentum_before"], round_0["momentum_after"]
    assert before.keys() == after.keys() and before
    for name in before:
        assert torch.equal(before[name], _masked(after[name], name, mask)), name


def test_a_resumed_moco_trajectory_goes_on_with_the_carried_state_of_its_checkpoint(resnet8_weights, tmp_path):
    config = ImpConfig.from_dict({**CARRY_SSL, "task": "moco", "weights": str(resnet8_weights), "rounds": 2,
                                  "queue_size": 96, "key_momentum": 0.9})
    straight = list(run_trajectory(config))
    # a Tune checkpoint of round 1 (what trainable._report saves), read back as a restarted trial does
    straight[1].state.save_checkpoint(tmp_path / "checkpoint")
    assert (tmp_path / "checkpoint" / "carried_round_02.pt").is_file()
    state = TrajectoryState.load(tmp_path / "checkpoint")
    resumed = list(run_trajectory(config, state))
    outcome = [(r.round, r.metrics, r.mask_digest, r.start_digest) for r in (x.record for x in resumed)]
    assert outcome == [(r.round, r.metrics, r.mask_digest, r.start_digest) for r in [straight[2].record]]
    # the durable copy keeps the newest two carried states; one missing is named, never made up
    for result in straight:
        result.state.save(tmp_path / "trajectory")
    assert sorted(p.name for p in (tmp_path / "trajectory").glob("carried_*")) == ["carried_round_02.pt",
                                                                                   "carried_round_03.pt"]
    with pytest.raises(ValueError, match=r"carried_round_01.pt: the state this round carries over .* unreadable"):
        TrajectoryState.load(tmp_path / "trajectory", next_round=1)


def test_data_parallel_moco_rounds_carry_the_same_state_as_one_process(ray_cluster, resnet8_weights, tmp_path):
    """Rounds over 2 Ray Train workers hand back what the next round carries over (rank 0's), and
    the workers start the next round from it: round 1's start, as rank 0 recorded it, is the one a
    single process restores from the same trajectory state."""
    import pyarrow.fs as pafs

    from ray_lth.tune.data_parallel import DataParallelRounds, WorkerResources

    values = {**CARRY_SSL, "task": "moco", "weights": str(resnet8_weights), "queue_size": 64, "key_momentum": 0.9,
              "shuffle_bn_splits": 4, "train_images": 128}
    runner = DataParallelRounds(WorkerResources(1, 0), pafs.LocalFileSystem(), str(tmp_path / "rounds"))
    round_0, round_1 = run_trajectory(ImpConfig.from_dict({**values, "workers_per_trial": 2}), round_runner=runner)
    carried = round_0.state.carried
    assert carried is not None and carried.optimizer["state"]  # the momentum came back from the workers
    assert {"wrapper.queue", "wrapper.queue_pointer", "wrapper.query.projector.0.weight"} <= set(carried.entries)
    config = ImpConfig.from_dict(values)
    task = build_task(config.task, config.data_root, config.image_size, **config.task_options)
    one_process = imp.train_round(config, task, 1, round_0.state, torch.device("cpu"))
    assert round_1.record.start_digest == one_process.start_digest
