"""Rewinding the whole model (paper, Algorithm 1: every round restarts from (θ_p, γ_p)): the
wrapped model a round trains — backbone, projection head, MoCo's key encoder and queue, the
segmenter's head — starts every round from the state captured at the rewind point, bit-exact,
pruned backbone weights zero; a MoCo v2 file's MLP head is γ_p on MoCo only; early rewinding
from a weights file is labelled θ_p+k%.

The reference is the wrapped module's own ``state_dict()`` recorded when ``train_masked`` is
entered (the state the round starts from), under the wrapper's own key names: independent of
how ``rewind.py`` maps wrapper keys to backbone keys.
"""

import pytest
import torch

import ray_lth.imp as imp
from checkpoint_files import moco_v2_file
from ray_lth.analysis.report import _series_label
from ray_lth.config import ImpConfig
from ray_lth.imp import run_trajectory
from ray_lth.trajectory_state import TrajectoryState
from ray_lth.models import build_model
from ray_lth.naming import group_name
from ray_lth.rewind import WRAPPER_PREFIX, early_rewind_iteration
from ray_lth.tasks import build_task
from ray_lth.weights import WeightsError

SSL = dict(train_images=64, eval_images=64, retrieval_batch_size=32, batch_size=32)
TASKS = {
    "digits": dict(task="digits", batch_size=128),
    "simclr": dict(task="simclr", **SSL),
    "moco": dict(task="moco", queue_size=96, key_momentum=0.9, **SSL),
    "segmentation_shapes": dict(task="segmentation_shapes", image_size=32, scenes_train=32, scenes_test=16,
                                batch_size=16),
    "detection_shapes": dict(task="detection_shapes", image_size=32, scenes_train=16, scenes_test=8, batch_size=8),
}


def _config(task, **values):
    return ImpConfig.from_dict({**dict(model="resnet8", rounds=2, epochs=1, lr=0.02, device="cpu", prune_fraction=0.5),
                                **TASKS[task], **values})


@pytest.fixture
def round_starts(monkeypatch):
    """Records, per call of ``train_masked``, the wrapped model's state as the round starts and,
    when IMP passes a step hook, its state after every step."""
    starts, steps = [], []
    real = imp.train_masked

    def recording(model, task, hparams, mask, device, generator, step_hook=None, masked_module=None, **hooks):
        starts.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        hook = None
        if step_hook is not None:
            def hook(iteration):
                steps.append({k: v.detach().clone() for k, v in model.state_dict().items()})
                step_hook(iteration)
        return real(model, task, hparams, mask, device, generator, hook, masked_module, **hooks)

    monkeypatch.setattr(imp, "train_masked", recording)
    return starts, steps


def _masked(reference, mask):
    """``reference`` with every wrapper entry whose key ends in a pruned backbone weight's name
    zeroed where pruned (the backbone's own entry and MoCo's key-encoder copy of it alike)."""
    expected = {}
    for key, value in reference.items():
        names = [n for n in mask if key == n or key.endswith("." + n)]
        assert len(names) <= 1, (key, names)
        expected[key] = value * mask[names[0]].to(value.dtype) if names else value
    return expected


def _assert_equal_states(found, expected, what):
    assert found.keys() == expected.keys(), what
    for key in expected:
        assert torch.equal(found[key], expected[key]), f"{what}: {key}"


@pytest.mark.parametrize("task", list(TASKS))
def test_every_round_restarts_from_the_whole_model_at_theta_p(resnet8_weights, round_starts, task):
    starts, _ = round_starts
    # rewind_scope="all": the whole model (the simCLR, MoCo and detection tasks' own scopes carry
    # some of it over from the last round instead, as the authors do: test_authors_ssl/_dense.py)
    results = list(run_trajectory(_config(task, rewind="pretrained", weights=str(resnet8_weights),
                                          rewind_scope="all")))
    assert len(starts) == 3
    for k in (1, 2):
        mask = results[k - 1].state.mask
        assert 0 < sum(int(m.sum()) for m in mask.values()) < sum(m.numel() for m in mask.values())
        _assert_equal_states(starts[k], _masked(starts[0], mask), f"{task} round {k}")
    if task != "digits":  # a wrapper: its heads are in the rewind state
        assert any(k.startswith(WRAPPER_PREFIX) for k in results[-1].state.rewind_state)
    if task == "moco":  # the key encoder's copy of the backbone is pruned too
        assert any(bool((starts[2][f"key.trunk.{n}"][~m] == 0).all()) and bool((~m).any())
                   for n, m in results[1].state.mask.items())


@pytest.mark.parametrize("task", ["digits", "moco"])
def test_early_rewind_restarts_from_the_whole_model_at_iteration_k(round_starts, task):
    starts, steps = round_starts
    config = _config(task, rewind="early", rewind_fraction=0.4, rounds=1)  # θ_k% from θ_0
    results = list(run_trajectory(config))
    built = build_task(config.task, config.data_root, config.image_size, **config.task_options)
    capture_at = early_rewind_iteration(config.train.epochs * built.batches_per_epoch(config.train.batch_size), 0.4)
    at_k = steps[capture_at - 1]
    assert any(not torch.equal(at_k[key], starts[0][key]) for key in at_k)  # it trained k steps
    _assert_equal_states(starts[1], _masked(at_k, results[0].state.mask), f"{task} round 1 from θ_k%")
    if task == "moco":  # θ_k% holds the heads, the key encoder (an EMA, not the query) and the queue
        state = results[0].state.rewind_state
        for key in ("query.projector.0.weight", "key.projector.0.weight", "key.trunk.layer1.0.conv1.weight", "queue"):
            assert torch.equal(state[WRAPPER_PREFIX + key], at_k[key]), key
        assert not torch.equal(at_k["key.projector.0.weight"], at_k["query.projector.0.weight"])




def test_a_moco_v2_files_mlp_is_the_moco_tasks_projection_head_and_the_key_encoder_starts_at_the_query(
        tmp_path, round_starts, capsys):
    starts, _ = round_starts
    backbone, head = moco_v2_file(tmp_path / "moco_v2.pth.tar")
    # train_dense: round 0 trains from the loaded heads (by default a MoCo file on moco is only scored)
    config = _config("moco", rewind="pretrained", weights=str(tmp_path / "moco_v2.pth.tar"), projection_dim=16,
                     rounds=1, train_dense=True, rewind_scope="all")
    results = list(run_trajectory(config))
    assert "heads from the file: projection head, key encoder; new: queue" in capsys.readouterr().err
    start = starts[0]
    for name, value in head.items():
        assert torch.equal(start[f"query.projector.{name[3:]}"], value), name
    for name, value in backbone.items():
        assert torch.equal(start[f"query.trunk.{name}"], value), name
    for key in [k for k in start if k.startswith("query.")]:
        assert torch.equal(start["key." + key[len("query."):]], start[key]), key
    # round 1: the same γ_p again (the head is never pruned), the key encoder = the masked query
    for name, value in head.items():
        assert torch.equal(starts[1][f"query.projector.{name[3:]}"], value), name
    _assert_equal_states(starts[1], _masked(starts[0], results[0].state.mask), "moco round 1")


def test_a_moco_file_gives_a_downstream_or_other_ssl_task_a_new_head(tmp_path, round_starts, capsys):
    starts, _ = round_starts
    _, head = moco_v2_file(tmp_path / "moco_v2.pth.tar")
    list(run_trajectory(_config("digits", rewind="pretrained", weights=str(tmp_path / "moco_v2.pth.tar"), rounds=0)))
    assert "heads from the file: none; new: fc" in capsys.readouterr().err
    list(run_trajectory(_config("simclr", rewind="pretrained", weights=str(tmp_path / "moco_v2.pth.tar"),
                                projection_dim=16, rounds=0)))
    assert "heads from the file: none; new: projection head" in capsys.readouterr().err
    assert not torch.equal(starts[1]["projector.0.weight"], head["fc.0.weight"])


def test_a_simclr_file_with_a_projection_head_loads_it_and_one_without_keeps_a_new_head(tmp_path, round_starts, capsys):
    starts, _ = round_starts
    torch.manual_seed(5)
    backbone = build_model("resnet8", 10).state_dict()
    # the paper's simCLR code: fc = Projection_head(fc1, fc2)
    head = {"fc.fc1.weight": torch.randn(64, 64), "fc.fc1.bias": torch.randn(64),
            "fc.fc2.weight": torch.randn(16, 64), "fc.fc2.bias": torch.randn(16)}
    torch.save({"state_dict": {**{k: v for k, v in backbone.items() if not k.startswith("fc.")}, **head}},
               tmp_path / "with_head.pth")
    torch.save({"state_dict": backbone}, tmp_path / "converted.pth")  # simclr-converter: fc is a linear classifier
    for name in ("with_head", "converted"):
        list(run_trajectory(_config("simclr", rewind="pretrained", weights=str(tmp_path / f"{name}.pth"),
                                    weights_format="simclr", projection_dim=16, rounds=0, train_dense=True)))
    logs = capsys.readouterr().err
    assert "heads from the file: projection head; new: none" in logs
    assert "heads from the file: none; new: projection head" in logs
    assert torch.equal(starts[0]["projector.0.weight"], head["fc.fc1.weight"])
    assert torch.equal(starts[0]["projector.2.bias"], head["fc.fc2.bias"])
    assert not torch.equal(starts[1]["projector.0.weight"], head["fc.fc1.weight"])


def test_a_projection_head_of_another_shape_is_refused_naming_its_keys(tmp_path):
    moco_v2_file(tmp_path / "moco_v2.pth.tar", projection_dim=16)
    config = _config("moco", rewind="pretrained", weights=str(tmp_path / "moco_v2.pth.tar"), projection_dim=8)
    with pytest.raises(WeightsError, match=r"fc\.2\.weight: file \(16, 64\) vs projection head \(8, 64\)"):
        next(run_trajectory(config))


def test_resume_reproduces_moco_rounds_from_the_saved_whole_model(resnet8_weights, tmp_path):
    config = _config("moco", rewind="pretrained", weights=str(resnet8_weights))
    straight = list(run_trajectory(config))
    interrupted = run_trajectory(config)
    next(interrupted).state.save(tmp_path / "state")
    interrupted.close()
    state = TrajectoryState.load(tmp_path / "state")
    assert state.rewind.kind == "recompute" and state.rewind_state is None  # θ_p and γ named, not copied
    task = build_task(config.task, config.data_root, config.image_size, **config.task_options)
    rebuilt = imp.rebuilt_rewind_state(config, task, state.rewind)
    assert any(k.startswith(WRAPPER_PREFIX + "key.") for k in rebuilt)
    _assert_equal_states(rebuilt, straight[0].state.rewind_state, "moco rewind state rebuilt on resume")
    resumed = state.records + [r.record for r in run_trajectory(config, state)]
    assert [(r.round, r.metrics, r.mask_digest) for r in resumed] == \
        [(r.record.round, r.record.metrics, r.record.mask_digest) for r in straight]


def test_a_rewind_file_without_the_heads_is_refused_by_name(resnet8_weights, tmp_path):
    first = next(run_trajectory(_config("moco", rewind="pretrained", weights=str(resnet8_weights), rounds=1)))
    first.state.save(tmp_path / "up")
    backbone_only = {k: v for k, v in first.state.rewind_state.items() if not k.startswith(WRAPPER_PREFIX)}
    torch.save(backbone_only, tmp_path / "old_rewind_state.pt")
    config = _config("moco", rewind="early", weights=str(resnet8_weights), rounds=0,
                     mask_file=str(tmp_path / "up" / "mask_round_01.rlthmask"),
                     rewind_file=str(tmp_path / "old_rewind_state.pt"))
    with pytest.raises(ValueError, match=r"rewind_file .*old_rewind_state.pt.*only backbone keys.*missing \['wrapper\."):
        next(run_trajectory(config))


def test_early_rewinding_from_a_weights_file_is_labelled_theta_p_plus_k():
    base = dict(model="resnet20", task="digits", seed=0, rewind="early")
    from_theta_p = {**base, "weights": "/w/resnet20.pt"}
    assert "-rewind_early-" in group_name(base)
    assert "-rewind_pretrained_early-" in group_name(from_theta_p)
    assert _series_label("g", base, []).startswith("(m_digits, θ_k%)")
    assert _series_label("g", from_theta_p, []).startswith("(m_digits, θ_p+k%)")
    assert _series_label("g", {**base, "rewind": "pretrained", "weights": "w"}, []).startswith("(m_digits, θ_p)")


def test_reinit_draws_every_round_anew_heads_included(resnet8_weights, round_starts):
    starts, _ = round_starts
    results = list(run_trajectory(_config("simclr", rewind="reinit", weights=str(resnet8_weights), rounds=1)))
    assert not torch.equal(starts[1]["projector.0.weight"], starts[0]["projector.0.weight"])
    assert not torch.equal(starts[1]["trunk.layer1.0.conv1.weight"], _masked(starts[0], results[0].state.mask)[
        "trunk.layer1.0.conv1.weight"])


def test_a_moco_file_on_its_own_task_is_the_dense_network_round_0_prunes_it_untrained(tmp_path, round_starts):
    """As the authors' main_moco_imp.py: the first mask is 20 % global magnitude
    pruning of θ_p itself, before any training; round 1 trains from θ_p under that mask. The file's
    format, named or detected under 'auto', decides; train_dense=True keeps a trained dense round."""
    from ray_lth.models import get_model_spec, prunable_parameters

    starts, _ = round_starts
    backbone, _ = moco_v2_file(tmp_path / "moco_v2.pth.tar")
    values = dict(rewind="pretrained", weights=str(tmp_path / "moco_v2.pth.tar"), projection_dim=16, rounds=1,
                  prune_fraction=0.2)
    assert not _config("moco", **values).train_dense  # weights_format=auto detects the MoCo v2 file
    assert _config("moco", **values, train_dense=True).train_dense
    assert _config("simclr", **values, weights_format="moco").train_dense  # a MoCo file on simCLR: trains
    config = _config("moco", **values, weights_format="moco")
    assert not config.train_dense
    round_0, round_1 = list(run_trajectory(config))
    assert len(starts) == 1  # round 0 never entered training
    assert (round_0.record.epochs, round_0.record.metrics["iterations"]) == (0, 0)
    # independent reference: the global magnitude threshold of θ_p's prunable weights, by sorting
    model = build_model("resnet8", 10)
    model.load_state_dict({**model.state_dict(), **backbone})
    weights = {k: p.detach() for k, p in prunable_parameters(model, get_model_spec("resnet8").never_pruned).items()}
    everything = torch.cat([w.abs().flatten() for w in weights.values()])
    threshold = everything.sort().values[round(0.2 * everything.numel()) - 1]
    for name, keep in round_0.state.mask.items():
        assert torch.equal(keep, weights[name].abs() > threshold), name
    assert round_1.record.epochs == 1
