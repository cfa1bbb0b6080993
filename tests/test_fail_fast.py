"""Errors no retry can fix (issue 14, item 4): bad files are refused on the driver before Ray
starts, each read once; a deterministic error inside a trial ends it once, not retried, with one
readable line."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from paper_files import write_cifar10
from ray_lth.config import ImpConfig
from ray_lth.masks import ones_mask, save_mask
from ray_lth.models import build_model, get_model_spec, prunable_parameters
from ray_lth.preflight import check_files
from ray_lth.spaces import SweepSpace
from ray_lth.tune.sweep import run_sweep

ROOT = Path(__file__).resolve().parents[1]
LAUNCHER = str(ROOT / "launchers" / "sweep.py")


def _mask_of(model_name, path):
    spec = get_model_spec(model_name)
    return save_mask(ones_mask(prunable_parameters(build_model(model_name, 10), spec.never_pruned)), path)


def _refused_before_ray(tmp_path, *args):
    """Run the launcher (no Ray running for it to join); return (stderr, seconds)."""
    started = time.perf_counter()
    result = subprocess.run([sys.executable, LAUNCHER, "--storage", str(tmp_path / "storage"), *args],
                            capture_output=True, text=True, timeout=120)
    seconds = time.perf_counter() - started
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    assert "Ray:" not in output and "Started a local Ray instance" not in output  # no Ray was started
    assert "Traceback" not in output and "weights_only=False" not in output
    assert len([line for line in result.stderr.splitlines() if "error:" in line]) == 1  # one message
    assert seconds < 30, seconds  # ~5 s alone on 2 cores (imports); the bound is 10 s
    return result.stderr


def test_garbage_weights_are_refused_before_ray_starts(tmp_path):
    weights = tmp_path / "garbage.pth"
    weights.write_bytes(b"\x00\x13 not a torch file" * 50)
    stderr = _refused_before_ray(tmp_path, "--weights", str(weights), "--set", "model=resnet8")
    assert "weights:" in stderr and str(weights) in stderr and "not a readable torch weights file" in stderr


def test_a_data_root_without_the_dataset_is_refused_before_ray_starts(tmp_path):
    empty = tmp_path / "data"
    empty.mkdir()
    stderr = _refused_before_ray(tmp_path, "--space", "paper_cifar", "--data-root", str(empty),
                                 "--set", "rewind=init")  # θ_0: no weights needed, only the data is wrong
    assert "data_root:" in stderr and str(empty / "cifar-10-batches-py" / "data_batch_1") in stderr
    assert "expected under" in stderr and "test_batch" in stderr


def test_a_mask_of_another_architecture_is_refused_before_ray_starts(tmp_path, resnet8_weights):
    mask = _mask_of("resnet20", tmp_path / "resnet20.rlthmask")
    stderr = _refused_before_ray(tmp_path, "--weights", str(resnet8_weights), "--set", "model=resnet8",
                                 "--set", "task=digits", "--set", f"mask_file={mask}", "--set", "rounds=0")
    assert "mask_file:" in stderr and str(mask) in stderr and "does not fit the model's prunable weights" in stderr


def _config(**fields):
    return ImpConfig.from_dict({"model": "resnet8", "task": "digits", "rewind": "init", **fields})


def test_each_distinct_file_is_read_once_for_many_configs(tmp_path, monkeypatch):
    import ray_lth.masks

    mask = _mask_of("resnet8", tmp_path / "m.rlthmask")
    reads = []
    real_load = ray_lth.masks.load_mask
    monkeypatch.setattr(ray_lth.masks, "load_mask", lambda path: reads.append(path) or real_load(path))
    check_files([_config(mask_file=str(mask), seed=seed) for seed in range(4)])
    assert reads == [str(mask)]


def test_a_complete_cifar_folder_passes_and_a_truncated_one_names_the_missing_file(tmp_path):
    root = write_cifar10(tmp_path / "data", n_train=10, n_test=5)
    check_files([_config(task="cifar10", data_root=str(root))])
    (root / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(ValueError, match=r"^data_root: task 'cifar10' reads .*data_batch_3: No such file"):
        check_files([_config(task="cifar10", data_root=str(root))])
    with pytest.raises(ValueError, match="data_root: task 'cifar10' reads a local dataset: pass --data-root"):
        check_files([_config(task="cifar10")])
    check_files([_config(task="digits")])  # embedded: nothing to read


def test_rewind_files_must_be_weights_only_states_of_the_model_and_task(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    mask = _mask_of("resnet8", tmp_path / "m.rlthmask")
    common = dict(rewind="early", mask_file=str(mask))
    with pytest.raises(ValueError, match="rewind_file: .*garbage.pt: not a readable torch weights file") as caught:
        check_files([_config(rewind_file=str(garbage), **common)])
    assert "weights_only=False" not in str(caught.value)
    other = tmp_path / "resnet20_state.pt"
    torch.save(build_model("resnet20", 10).state_dict(), other)
    with pytest.raises(ValueError, match="rewind_file: rewind_file .*resnet20_state.pt is not a whole-model rewind"):
        check_files([_config(rewind_file=str(other), **common)])
    fits = tmp_path / "resnet8_state.pt"
    torch.save(build_model("resnet8", 10).state_dict(), fits)  # digits: 10 classes, the model is its own wrapper
    check_files([_config(rewind_file=str(fits), **common)])


def _result_lines(trial_dir):
    return [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines()]


def test_a_corrupt_mask_seen_only_by_the_trial_fails_it_once_with_one_line(ray_cluster, tmp_path):
    """A mask file the driver did not read (run_sweep without the launcher's check): the trial
    meets MaskFileError, ends once, is not retried, and the sweep names it in one line."""
    mask = tmp_path / "corrupt.rlthmask"
    mask.write_bytes(b"RLTHMASK but then nothing that belongs to a mask file" * 3)
    space = SweepSpace("t", fixed=dict(model="resnet8", task="digits", rewind="init", rounds=0, epochs=1,
                                       device="cpu", mask_file=str(mask)), grid=dict(seed=[0]), weights="none")
    outcome = run_sweep(space, tmp_path / "storage", "corrupt", verbose=0)
    (line,) = outcome.errors
    assert line.startswith("trial ") and " failed: MaskFileError: " in line and str(mask) in line
    assert "Traceback" not in line
    (trial_dir,) = [p for p in outcome.experiment_dir.iterdir() if (p / "result.json").exists()]
    assert not (trial_dir / "error.txt").exists()  # never raised into Ray: no failure, no retry
    assert [sorted(r) for r in _result_lines(trial_dir)][0].count("trial_error") == 1
    assert len(_result_lines(trial_dir)) == 1  # one attempt, one (error) result
    assert outcome.summary == []  # no round was reported


def test_a_diverging_trial_fails_once_and_the_launcher_ends_with_one_line(ray_cluster, resnet8_weights, tmp_path):
    """A deterministic error only a trial can meet (the loss diverges): through the launcher, exit
    status 1, one line per failed trial, no traceback, the trial ran once."""
    result = subprocess.run(
        [sys.executable, LAUNCHER, "--address", ray_cluster, "--storage", str(tmp_path), "--name", "diverge",
         "--weights", str(resnet8_weights), "--set", "model=resnet8", "--set", "task=digits", "--set", "rounds=1",
         "--set", "epochs=1", "--set", "seed=[0]", "--set", "pruning=global", "--set", "lr=1e6"],
        capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    failed = [line for line in result.stderr.splitlines() if line.startswith("trial ") and " failed: " in line]
    assert len(failed) == 1 and "TrainingDivergedError: training loss became nan" in failed[0], output[-3000:]
    assert "Traceback" not in output and "weights_only=False" not in output
    (trial_dir,) = [p for p in (tmp_path / "diverge").iterdir() if (p / "result.json").exists()]
    assert not (trial_dir / "error.txt").exists() and len(_result_lines(trial_dir)) == 1


def test_the_temperature_ablation_gets_the_same_check(tmp_path):
    weights = tmp_path / "garbage.pth"
    weights.write_bytes(b"\x00\x13 not a torch file" * 50)
    stderr = _refused_before_ray(tmp_path, "--space", "simclr_temperature", "--weights", str(weights),
                                 "--set", "model=resnet8")
    assert "weights:" in stderr and str(weights) in stderr


def test_an_error_result_reaches_no_round_reader_and_the_scheduler_lets_the_trial_end():
    from types import SimpleNamespace

    from ray.tune import Callback
    from ray.tune.schedulers import TrialScheduler

    from ray_lth.matching import MatchingTracker
    from ray_lth.tune.scheduler import MatchingScheduler
    from ray_lth.tune.trial_errors import TRIAL_ERROR, round_results_only

    class Recorder(Callback):
        def __init__(self):
            self.calls = []

        def on_trial_result(self, iteration, trials, trial, result, **info):
            self.calls.append(("result", result["round"]))

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.calls.append(("complete", trial))

    recorder = Recorder()
    (wrapped,) = round_results_only([recorder])
    wrapped.on_trial_result(iteration=1, trials=[], trial="t", result={"round": 0})
    wrapped.on_trial_result(iteration=2, trials=[], trial="t", result={TRIAL_ERROR: "ValueError: bad"})
    wrapped.on_trial_complete(iteration=3, trials=[], trial="t")
    assert recorder.calls == [("result", 0), ("complete", "t")]
    tracker = MatchingTracker(2, 1)
    scheduler = MatchingScheduler(tracker)
    trial = SimpleNamespace(config={"rounds": 3})
    assert scheduler.on_trial_result(None, trial, {TRIAL_ERROR: "ValueError: bad"}) == TrialScheduler.CONTINUE
    assert tracker.results == {}


def test_an_optuna_trial_ended_by_an_error_does_not_stop_the_search(ray_cluster, tmp_path):
    """Tune refuses a result without the searcher's metric: the error result names it (-inf)."""
    mask = tmp_path / "corrupt.rlthmask"
    mask.write_bytes(b"not a mask")
    space = SweepSpace("t", fixed=dict(model="resnet8", task="digits", rewind="init", rounds=0, epochs=1,
                                       device="cpu", mask_file=str(mask)), grid=dict(seed=[0]),
                       sample=dict(lr=("loguniform", 0.01, 0.2)), num_samples=1, weights="none")
    outcome = run_sweep(space, tmp_path / "storage", "optuna", verbose=0)
    (line,) = outcome.errors
    assert " failed: MaskFileError: " in line and "too short to be a mask file" in line
