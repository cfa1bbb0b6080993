"""The simCLR and MoCo v2 IMP tasks as the authors' code computes them (issue 19), each pinned
against a reference written here from their code (VITA-Group/CV_LTH_Pre-training)."""

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

import ray_lth.imp as imp
from ray_lth.config import ImpConfig
from ray_lth.imp import run_trajectory
from ray_lth.models import build_model
from ray_lth.tasks import build_task
from ray_lth.trajectory_state import TrajectoryState


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


def _moco_v2_file(path, projection_dim=16, seed=3):
    """A MoCo v2 checkpoint as the authors' main_moco.py saves it (random values): encoder_q with
    its fc MLP, encoder_k, queue and queue_ptr under ``module.``."""
    torch.manual_seed(seed)
    backbone = {k: v for k, v in build_model("resnet8", 10).state_dict().items() if not k.startswith("fc.")}
    head = {"fc.0.weight": torch.randn(64, 64), "fc.0.bias": torch.randn(64),
            "fc.2.weight": torch.randn(projection_dim, 64), "fc.2.bias": torch.randn(projection_dim)}
    state = {f"module.encoder_q.{k}": v for k, v in {**backbone, **head}.items()}
    state.update({f"module.encoder_k.{k}": torch.randn_like(v.float()).to(v.dtype) for k, v in {**backbone, **head}.items()})
    state["module.queue"] = torch.randn(projection_dim, 96)
    state["module.queue_ptr"] = torch.zeros(1, dtype=torch.long)
    torch.save({"epoch": 800, "arch": "resnet8", "state_dict": state, "optimizer": {}}, path)


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
    _moco_v2_file(tmp_path / "moco_v2.pth.tar")
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
