"""Lean per-round checkpoints: a round's checkpoint holds trajectory.json and its mask, the rewind
state only by a reference verified on resume; θ_k% is written once per trajectory.

References: the state an uninterrupted ``run_trajectory`` held and restarted its rounds from
(in memory), the ``start_digest`` each round recorded from the model as it actually started,
and the records/masks of the uninterrupted run.
"""

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import ray_lth.imp as imp
from ray_lth.config import ImpConfig
from ray_lth.imp import run_trajectory
from ray_lth.rewind import WRAPPER_PREFIX, state_digest
from ray_lth.storage import Location, location
from ray_lth.tasks import build_task
from ray_lth.ticket import build_ticket_model, export_ticket, load_ticket
from ray_lth.trajectory_state import CARRIED_FILE, MASK_FILE, REWIND_FILE, STATE_FILE, TrajectoryState
from ray_lth.tune import trainable
from ray_lth.tune.trainable import resume_state

SSL = dict(train_images=64, eval_images=64, retrieval_batch_size=32, batch_size=32)
CASES = {
    "pretrained": dict(task="digits", rewind="pretrained", batch_size=128),
    "init": dict(task="digits", rewind="init", batch_size=128),
    "early": dict(task="digits", rewind="early", rewind_fraction=0.3, batch_size=128),
    "reinit-simclr": dict(task="simclr", rewind="reinit", **SSL),
    "pretrained-moco": dict(task="moco", rewind="pretrained", queue_size=96, key_momentum=0.9, **SSL),
}


def _config(weights, **values):
    base = dict(model="resnet8", rounds=1, epochs=1, device="cpu", prune_fraction=0.5)
    if values.get("rewind") != "init":
        base["weights"] = str(weights)
    return ImpConfig.from_dict({**base, **values})


def _task(config):
    return build_task(config.task, config.data_root, config.image_size, **config.task_options)


def _masked(state, mask):
    return {k: (v * mask[k].to(v.dtype) if k in mask else v) for k, v in state.items()}


def _same(found, expected):
    assert found.keys() == expected.keys()
    for key in expected:
        assert torch.equal(found[key], expected[key]), key


def _outcome(record):
    return record.round, record.metrics, record.mask_digest, record.start_digest


@pytest.mark.parametrize("case", list(CASES))
def test_the_rewind_state_read_back_is_the_one_the_trajectory_restarted_from(case, resnet8_weights, tmp_path):
    config = _config(resnet8_weights, **CASES[case])
    straight = list(run_trajectory(config))
    straight[0].state.save(tmp_path / "trajectory")
    saved = sorted(p.name for p in (tmp_path / "trajectory").iterdir())
    captured = config.rewind == "early"
    # MoCo's own rewind scope: its queue, new heads and momentum go on, trained, into round 1
    carries = case == "pretrained-moco"
    assert saved == sorted([MASK_FILE.format(0), MASK_FILE.format(1), STATE_FILE] + [REWIND_FILE] * captured
                           + [CARRIED_FILE.format(1)] * carries)

    loaded = TrajectoryState.load(tmp_path / "trajectory")
    assert loaded.rewind.kind == ("captured" if captured else "recompute")
    assert (loaded.rewind_state is not None) == captured  # θ_k% read back; the rest rebuilt from the config
    found = loaded.rewind_state if captured else imp.rebuilt_rewind_state(config, _task(config), loaded.rewind)
    _same(found, straight[0].state.rewind_state)
    assert any(k.startswith(WRAPPER_PREFIX) for k in found) == (config.task != "digits")  # the heads too
    # the digests the rounds recorded from the model as it started: round 0 from the start
    # (θ_p or θ_0, dense), round 1 from the rewind point under its mask (reinit draws afresh)
    digest = state_digest(found)
    if captured:
        assert straight[1].record.start_digest == state_digest(_masked(found, straight[0].state.mask))
    else:
        assert straight[0].record.start_digest == digest == loaded.rewind.state_digest
    # resumed from the saved state: the rounds of the uninterrupted run, masks included
    resumed = list(run_trajectory(config, loaded))
    assert [_outcome(r.record) for r in resumed] == [_outcome(r.record) for r in straight[1:]]
    assert all(torch.equal(resumed[-1].state.mask[n], straight[-1].state.mask[n]) for n in straight[-1].state.mask)


def test_a_changed_weights_file_or_rewind_file_is_refused_by_name_on_resume(resnet8_weights, tmp_path):
    weights = tmp_path / "theta_p.pt"
    shutil.copyfile(resnet8_weights, weights)
    config = _config(weights, task="digits", rewind="pretrained", batch_size=128)
    first = next(run_trajectory(config))
    first.state.save(tmp_path / "trajectory")
    recorded = first.state.rewind.sha256
    theta = torch.load(weights, weights_only=True)
    key = next(k for k, v in theta.items() if v.is_floating_point())
    theta[key] = theta[key] * 1.01
    torch.save(theta, weights)
    state = TrajectoryState.load(tmp_path / "trajectory")
    with pytest.raises(ValueError, match=rf"theta_p.pt: sha256 \w{{64}} differs from {recorded}, the θ_p file"):
        next(run_trajectory(config, state))
    # the same file but another start drawn (here: another seed's head): both digests named
    shutil.copyfile(resnet8_weights, weights)
    other_seed = _config(weights, task="digits", rewind="pretrained", batch_size=128, seed=1)
    with pytest.raises(ValueError, match=rf"theta_p.pt: rewind state digest \w{{64}} differs from "
                                         rf"{first.state.rewind.state_digest}"):
        next(run_trajectory(other_seed, TrajectoryState.load(tmp_path / "trajectory")))

    # a transfer trial's rewind_file (another trajectory's θ_k%) is named, never copied, and checked
    torch.save(first.state.rewind_state, tmp_path / "theta_k.pt")
    transfer = _config(weights, task="digits", rewind="early", batch_size=128, rounds=1,
                       mask_file=str(tmp_path / "trajectory" / MASK_FILE.format(1)), rewind_file=str(tmp_path / "theta_k.pt"))
    saved = next(run_trajectory(transfer)).state
    assert saved.rewind.kind == "file" and saved.rewind.path == str(tmp_path / "theta_k.pt")
    saved.save(tmp_path / "transfer")
    assert REWIND_FILE not in [p.name for p in (tmp_path / "transfer").iterdir()]
    changed = {k: v + 1 if v.is_floating_point() else v for k, v in first.state.rewind_state.items()}
    torch.save(changed, tmp_path / "theta_k.pt")
    with pytest.raises(ValueError, match=r"theta_k.pt: sha256 \w{64} differs from \w{64}, the rewind_file"):
        next(run_trajectory(transfer, TrajectoryState.load(tmp_path / "transfer")))


def test_a_rounds_checkpoint_is_its_mask_and_trajectory_json_and_theta_k_is_written_once(
        resnet8_weights, tmp_path, monkeypatch):
    config = _config(resnet8_weights, task="digits", rewind="early", batch_size=128, rounds=2)
    written = []
    real_write = Location.write_bytes

    def counting(self, data):
        written.append((self.name, len(data)))
        real_write(self, data)

    monkeypatch.setattr(Location, "write_bytes", counting)
    checkpoints = []

    def from_directory(folder):  # what Tune would upload: the folder as _report leaves it
        checkpoints.append({p.name: p.stat().st_size for p in Path(folder).iterdir()})
        return folder

    monkeypatch.setattr(trainable, "tune", SimpleNamespace(report=lambda metrics, checkpoint: None,
                                                           Checkpoint=SimpleNamespace(from_directory=from_directory)))
    for result in run_trajectory(config):
        result.state.save(tmp_path / "trajectory")
        trainable._report({}, result.state)
    assert [n for n, _ in written].count(REWIND_FILE) == 1  # θ_k%: once per trajectory, not per round
    for k, files in enumerate(checkpoints):
        mask_name = MASK_FILE.format(k + 1)
        assert sorted(files) == sorted([STATE_FILE, mask_name])
        assert sum(files.values()) <= files[mask_name] + 64 * 1024
    rewind_bytes = (tmp_path / "trajectory" / REWIND_FILE).stat().st_size
    assert rewind_bytes > 64 * 1024  # the bound above would fail with the rewind state in the checkpoint


@pytest.fixture(scope="module")
def early_run(resnet8_weights):
    """An uninterrupted θ_k% trajectory (rounds 0..2) and its config."""
    torch.set_num_threads(1)
    config = _config(resnet8_weights, task="digits", rewind="early", batch_size=128, rounds=2)
    return config, list(run_trajectory(config))


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path):
    if request.param == "local":
        return location(tmp_path / "store")
    return location(request.getfixturevalue("s3_server")("lean-checkpoints"))


def _corrupt(target: Location) -> None:
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))  # overwritten through the storage layer (a PUT on S3)


def test_a_corrupted_object_in_storage_is_reported_by_name_and_the_round_before_resumes(
        early_run, storage, tmp_path, capsys):
    config, straight = early_run
    durable = storage / f"trial-{tmp_path.name}" / "trajectory"
    for result in straight:
        result.state.save(durable)
    checkpoint = tmp_path / "checkpoint"  # Tune hands the trainable a local copy of its checkpoint
    straight[-1].state.save_checkpoint(checkpoint)
    intact = resume_state(durable, checkpoint)
    assert intact.next_round == 3 and intact.rewind.kind == "captured"
    _same(intact.rewind_state, straight[-1].state.rewind_state)

    _corrupt(location(checkpoint) / STATE_FILE)  # the checkpoint is unusable: the durable copy resumes
    assert resume_state(durable, checkpoint).next_round == 3
    assert f"{checkpoint / STATE_FILE}: unreadable trajectory state" in capsys.readouterr().err

    _corrupt(durable / MASK_FILE.format(3))  # the newest mask: the round before resumes ...
    state = resume_state(durable, checkpoint)
    assert state.next_round == 2 and [r.round for r in state.records] == [0, 1]
    assert f"{durable / MASK_FILE.format(3)}: checksum mismatch" in capsys.readouterr().err
    # ... and goes on as the uninterrupted trajectory did
    resumed = list(run_trajectory(config, state))
    assert [_outcome(r.record) for r in resumed] == [_outcome(straight[2].record)]

    _corrupt(durable / REWIND_FILE)  # θ_k% is every round's start: no round is usable, none is faked
    assert resume_state(durable, None) is None
    err = capsys.readouterr().err
    assert f"{durable / REWIND_FILE}: unreadable rewind weights" in err or \
        f"{durable / REWIND_FILE}: rewind state digest" in err


def test_a_ticket_is_exported_from_a_trajectory_in_storage_with_its_theta_k(early_run, storage, tmp_path):
    config, straight = early_run
    durable = storage / f"ticket-{tmp_path.name}" / "trajectory"
    for result in straight[:2]:
        result.state.save(durable)
    # θ_p+k%: the ticket carries θ_k% and names θ_p by its SHA-256
    ticket = load_ticket(export_ticket(durable, 1, config.to_dict(), tmp_path / "ticket"), config.weights)
    theta_k = straight[0].state.rewind_state  # what rounds 1 and 2 restarted from
    model = build_ticket_model(ticket)
    for name, value in model.state_dict().items():
        expected = theta_k[name] * ticket.mask[name] if name in ticket.mask else theta_k[name]
        assert torch.equal(value, expected), name
