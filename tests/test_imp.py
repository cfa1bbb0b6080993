import subprocess
import sys
from pathlib import Path

import torch

from ray_lth.config import ImpConfig
from ray_lth.imp import run_trajectory
from ray_lth.trajectory_state import TrajectoryState
import pytest

from ray_lth.masks import load_mask, mask_digest, save_mask

ROOT = Path(__file__).resolve().parents[1]


def _config(weights, **overrides):
    values = dict(model="resnet8", task="digits", weights=str(weights), rounds=3, epochs=2, batch_size=64,
                  device="cpu", image_size=16)
    values.update(overrides)
    return ImpConfig.from_dict(values)


def test_embedded_trajectory_learns_and_walks_the_sparsity_grid(resnet8_weights):
    results = list(run_trajectory(_config(resnet8_weights)))
    records = [r.record for r in results]
    assert [r.round for r in records] == [0, 1, 2, 3]
    assert [round(100 * r.sparsity, 2) for r in records] == [0.0, 20.0, 36.0, 48.8]
    assert records[0].metric > 0.6  # 10 classes: chance is 0.1
    assert [r.epochs for r in records] == [2, 4, 6, 8]
    for earlier, later in zip(results, results[1:]):
        assert all(not (later.state.round_mask[n] & ~earlier.state.round_mask[n]).any() for n in later.state.round_mask)


def test_resume_reproduces_the_uninterrupted_trajectory(resnet8_weights, tmp_path):
    config = _config(resnet8_weights, rounds=2, epochs=1)
    straight = [r.record for r in run_trajectory(config)]
    interrupted = run_trajectory(config)
    first = next(interrupted)
    first.state.save(tmp_path / "state")
    interrupted.close()
    state = TrajectoryState.load(tmp_path / "state")
    assert state.next_round == 1 and len(state.records) == 1
    resumed = state.records + [r.record for r in run_trajectory(config, state)]
    assert [(r.round, r.metric, r.mask_digest) for r in resumed] == [(r.round, r.metric, r.mask_digest) for r in straight]


def test_saved_state_holds_the_round_mask_file(resnet8_weights, tmp_path):
    for result in run_trajectory(_config(resnet8_weights, rounds=1, epochs=1)):
        result.state.save(tmp_path)
    assert abs(sum(int(m.sum()) for m in load_mask(tmp_path / "mask_round_01.rlthmask").values())
               / sum(m.numel() for m in load_mask(tmp_path / "mask_round_00.rlthmask").values()) - 0.8) < 1e-4


def test_early_rewind_and_reinit_and_random_init_run(resnet8_weights):
    early = list(run_trajectory(_config(resnet8_weights, rewind="early", rounds=1, epochs=1)))
    initial = list(run_trajectory(_config(resnet8_weights, rewind="pretrained", rounds=1, epochs=1)))
    # θ_5% differs from θ_p: round 0 trained a few steps before it was captured
    assert any(not torch.equal(early[0].state.rewind_state[k], initial[0].state.rewind_state[k])
               for k in initial[0].state.rewind_state)
    assert len(list(run_trajectory(_config(resnet8_weights, rewind="reinit", rounds=1, epochs=1)))) == 2
    scratch = ImpConfig.from_dict(dict(model="resnet8", rewind="init", rounds=0, epochs=1, device="cpu"))
    assert list(run_trajectory(scratch))[0].record.metric > 0.2


def test_launcher_runs_prints_a_table_and_resumes(tmp_path, resnet8_weights):
    command = [sys.executable, str(ROOT / "launchers" / "imp.py"), "--weights", str(resnet8_weights),
               "--out", str(tmp_path / "run"), "--set", "model=resnet8", "--set", "epochs=1"]
    first = subprocess.run(command + ["--set", "rounds=1"], capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "sparsity %" in first.stdout and "20.00" in first.stdout
    second = subprocess.run(command + ["--set", "rounds=2"], capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert "resuming" in second.stdout and "36.00" in second.stdout
    other = subprocess.run(command + ["--set", "lr=0.5"], capture_output=True, text=True, timeout=300)
    assert other.returncode != 0 and "another config" in other.stderr


def test_a_transferred_mask_is_fine_tuned_fixed_and_a_foreign_mask_refused(resnet8_weights, tmp_path):
    upstream = list(run_trajectory(_config(resnet8_weights, task="shapes", rounds=2, epochs=1)))
    upstream[-1].state.save(tmp_path / "up")
    mask_file = tmp_path / "up" / "mask_round_02.rlthmask"
    transfer = list(run_trajectory(_config(resnet8_weights, rounds=0, epochs=1, mask_file=str(mask_file),
                                           mask_label="m_shapes-r2")))
    assert len(transfer) == 1 and round(100 * transfer[0].record.sparsity, 2) == 36.0
    assert transfer[0].record.mask_digest == mask_digest(upstream[-1].state.round_mask)[:16]
    foreign = tmp_path / "foreign.rlthmask"
    save_mask({"conv9.weight": torch.ones(3, dtype=torch.bool)}, foreign)
    with pytest.raises(ValueError, match="foreign.rlthmask does not fit"):
        list(run_trajectory(_config(resnet8_weights, rounds=0, epochs=1, mask_file=str(foreign))))
