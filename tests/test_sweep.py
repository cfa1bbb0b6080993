"""The sweep end to end on the shared Ray instance: results.csv, resume, faults, TensorBoard
(a killed worker, restored from its trajectory copy, and two nodes: tests/test_s3_sweep.py)."""

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ray_lth.spaces import SweepSpace
from ray_lth.transfer import TransferSpace
from ray_lth.tune.sweep import SweepError, run_sweep

ROOT = Path(__file__).resolve().parents[1]


def _space(weights, seeds=(0, 1), rounds=3, **extra):
    fixed = dict(model="resnet8", task="digits", rewind="pretrained", rounds=rounds, epochs=1,
                 weights=str(weights), device="cpu")
    return SweepSpace("test", fixed={**fixed, **extra}, grid=dict(seed=list(seeds)), weights="none", patience=100)


def _rows(experiment):
    with open(experiment / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def _launch_command(address, storage, *args):
    """The launcher on the `quick` space, small (later --set override these), joined to ``address``."""
    return [sys.executable, str(ROOT / "launchers" / "sweep.py"), "--address", address, "--storage", str(storage),
            "--space", "quick", "--set", "model=resnet8", "--set", "epochs=3", "--set", "rounds=4",
            "--set", "task=digits", "--set", "pruning=global",
            "--patience", "100", *args]


def _launch(address, storage, *args, cwd=None):
    return subprocess.Popen(_launch_command(address, storage, *args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True, cwd=cwd)


def _wait_for_round(experiment, round_index, timeout=240):
    """Poll the trials' result.json until one reports ``round_index``; return that result."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for result_file in experiment.glob("*/result.json"):
            for line in result_file.read_text().splitlines():
                try:
                    result = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line being written
                if result.get("round", -1) >= round_index:
                    return result
        time.sleep(0.5)
    raise TimeoutError(f"no trial of {experiment} reached round {round_index}")


def test_sweep_writes_one_row_per_trial_and_round_on_the_sparsity_grid(ray_cluster, resnet8_weights, tmp_path):
    outcome = run_sweep(_space(resnet8_weights), tmp_path, "grid", verbose=0)
    assert outcome.errors == []
    rows = _rows(outcome.experiment_dir)
    keys = [(r["trial_name"], int(r["round"])) for r in rows]
    assert len(keys) == len(set(keys)) == 2 * 4
    for r in rows:
        assert abs(100 * float(r["sparsity"]) - 100 * (1 - 0.8 ** int(r["round"]))) < 0.01
        assert r["matching"] in ("0", "1")
        assert r["rewind_scope"] == "all"  # the digits task's own, resolved by the trial (the space names none)
    (summary,) = outcome.summary
    assert summary["seeds"] == 2 and summary["trials"] == 2 and summary["epochs"] == 8
    assert summary["dense_mean"] > 0.2
    trial_dirs = [p for p in outcome.experiment_dir.iterdir() if (p / "trajectory").is_dir()]
    assert len(trial_dirs) == 2
    assert all(len(list((p / "trajectory").glob("mask_round_*.rlthmask"))) == 5 for p in trial_dirs)  # rounds 0..4
    assert all(len(list(p.glob("checkpoint_*"))) == 4 for p in trial_dirs)  # retention keeps every round
    event_dirs = list((outcome.experiment_dir / "tensorboard").iterdir())
    assert sorted(d.name for d in event_dirs) == sorted(f"{summary['group']}-seed{s}" for s in (0, 1))
    assert all(list(d.glob("events.out.tfevents.*")) for d in event_dirs)
    with pytest.raises(SweepError, match="--resume"):
        run_sweep(_space(resnet8_weights), tmp_path, "grid", verbose=0)


def test_fractional_gpus_without_a_gpu_are_refused_up_front(ray_cluster, resnet8_weights, tmp_path):
    space = _space(resnet8_weights)
    space = SweepSpace(**{**space.__dict__, "gpus_per_trial": 0.25})
    with pytest.raises(SweepError, match="0.25 GPU"):
        run_sweep(space, tmp_path, "gpu", verbose=0)


def test_invalid_space_is_rejected_before_ray_starts(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "launchers" / "sweep.py"), "--storage", str(tmp_path),
                             "--set", "rewind=rewound"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "rewind='rewound' is not allowed" in result.stderr
    assert "Started a local Ray instance" not in result.stderr + result.stdout


def test_a_killed_driver_resumes_with_the_same_rows_as_an_uninterrupted_run(ray_cluster, resnet8_weights, tmp_path):
    launcher = _launch(ray_cluster, tmp_path, "--set", "seed=[0, 1]", "--set", "rounds=3", "--weights",
                       str(resnet8_weights), "--name", "killd")
    experiment = tmp_path / "killd"
    _wait_for_round(experiment, 2)
    os.killpg(launcher.pid, signal.SIGKILL)
    launcher.communicate(timeout=60)
    resumed = subprocess.Popen([sys.executable, str(ROOT / "launchers" / "sweep.py"), "--address", ray_cluster,
                                "--storage", str(tmp_path), "--name", "killd", "--resume"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output
    rows = _rows(experiment)
    keys = sorted((r["trial_name"].rsplit("-", 1)[-1], int(r["round"])) for r in rows)
    assert keys == sorted((f"seed{s}", k) for s in (0, 1) for k in range(4)), output
    summary = list(csv.DictReader(open(experiment / "summary.csv")))
    assert summary[0]["seeds"] == "2"  # the resumed sweep kept the space it started with


def test_the_default_quick_space_end_to_end_lands_on_the_paper_grid_with_a_readable_console(ray_cluster, tmp_path):
    """README command 1's sweep (the `quick` space as shipped: model, task, embedded θ_p, epochs,
    both arms, patience), joined to the session's Ray, cut to rounds 0..1 and one seed: 4 rounds
    instead of the ~66 that 6 trials of up to 19 rounds run (~7 min on 2 idle cores)."""
    result = subprocess.run([sys.executable, str(ROOT / "launchers" / "sweep.py"), "--address", ray_cluster,
                             "--storage", str(tmp_path), "--set", "rounds=1", "--set", "seed=[0]"],
                            capture_output=True, text=True, timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "max matching sparsity %" in result.stdout
    assert re.search(r"IMP tickets match up to \d+\.\d\d %.*, random masks up to \d+\.\d\d %", result.stdout)
    rows = _rows(tmp_path / "quick")
    assert sorted((r["pruning"], r["seed"], r["round"]) for r in rows) == sorted(
        (p, "0", k) for p in ("global", "random") for k in "01")
    for r in rows:
        assert abs(100 * float(r["sparsity"]) - 100 * (1 - 0.8 ** int(r["round"]))) < 0.01
    assert all(float(r["metric"]) > 0.5 for r in rows if r["round"] == "0")  # dense: far above chance (0.1)
    assert all(r["matching"] in ("0", "1") for r in rows)  # every round judged against the dense band
    summary = list(csv.DictReader(open(tmp_path / "quick" / "summary.csv")))
    assert sorted(s["pruning"] for s in summary) == ["global", "random"] and {s["seeds"] for s in summary} == {"1"}
    for s in summary:  # the answer is a sparsity of the grid the arm ran (or none matched)
        assert s["max_matching_sparsity"] == "" or any(
            abs(float(s["max_matching_sparsity"]) - (1 - 0.8 ** k)) < 1e-3 for k in range(0, 2)), s
    timing = json.loads((tmp_path / "quick" / "timing.json").read_text())
    assert timing["rounds"] == len(rows) and 0 < timing["core_utilisation"] <= 1.2
    assert f"core utilisation {timing['core_utilisation']:.2f}" in output
    assert (tmp_path / "quick" / "report" / "curves_camo_shapes.png").is_file()
    # the console: no checkpoint lines, every round of every trial in one line, sparsity in percent only
    assert "Checkpoint successfully created" not in output and "Token authentication" not in output
    for r in rows:
        label = f"pruning={r['pruning']} seed{r['seed']}"
        assert re.search(rf"{re.escape(label)} +round +{r['round']}  sparsity +{100 * float(r['sparsity']):.2f} %",
                         output), label
    fractions = {f"{float(r['sparsity']):.6g}" for r in rows if float(r["sparsity"]) > 0}  # 0.2 (0.199979…)
    assert not any(re.search(rf"(?<![\d.]){re.escape(f)}(?!\d)", output) for f in fractions), fractions
    # one torch thread per trial CPU, though the launcher's worker setup hook imports torch before
    # Ray sets OMP_NUM_THREADS (two 2-thread trials on 2 cores made every round ~10x slower)
    threads = {json.loads(line)["torch_threads"] for f in (tmp_path / "quick").glob("*/result.json")
               for line in f.read_text().splitlines()}
    assert threads == {1}


def test_transfer_sweep_starts_tickets_while_the_upstream_runs_and_judges_them(ray_cluster, resnet8_weights, tmp_path):
    # 3 upstream epochs a round: the round-1 tickets end 6-9 s before upstream round 2 at 2 epochs,
    # ~25 s at 4 (measured), so 3 keeps the overlap this checks with room for a slower machine
    space = TransferSpace(
        "t", upstream=dict(model="resnet8", task="shapes", rewind="pretrained", epochs=3, weights=str(resnet8_weights),
                           device="cpu"),
        downstream={"digits": dict(epochs=1, device="cpu"), "gratings": dict(epochs=1, device="cpu")},
        rounds=[1, 2], seeds=[0], weights="none")
    outcome = run_sweep(space, tmp_path, "transfer", verbose=0)
    assert outcome.errors == []
    rows = _rows(outcome.experiment_dir)
    upstream_rows = sorted(int(r["round"]) for r in rows if "-shapes-" in r["trial_name"])
    assert upstream_rows == [0, 1, 2]
    assert len([r for r in rows if "-m_shapes-" in r["trial_name"]]) == 4  # 2 tasks x 2 rounds
    tickets = {(r["trial_name"].split("-")[1], r["trial_name"].split("-m_shapes-")[1][:2]): float(r["sparsity"])
               for r in rows if "-m_shapes-" in r["trial_name"]}
    assert tickets == {("digits", "r1"): pytest.approx(0.2, abs=1e-4), ("gratings", "r1"): pytest.approx(0.2, abs=1e-4),
                       ("digits", "r2"): pytest.approx(0.36, abs=1e-4), ("gratings", "r2"): pytest.approx(0.36, abs=1e-4)}
    # the round-1 tickets finished before the upstream's last round did: they did not wait for it
    upstream_dir = next(p for p in outcome.experiment_dir.iterdir() if "-shapes-" in p.name and p.is_dir())
    upstream_end = (upstream_dir / "checkpoint_000002").stat().st_mtime
    early = [p for p in outcome.experiment_dir.iterdir() if "-m_shapes-r1-" in p.name]
    assert len(early) == 2 and all((p / "checkpoint_000000").stat().st_mtime < upstream_end for p in early)
    verdicts = outcome.transfer
    assert len(verdicts["rows"]) == 4 and all(r["matching"] in (True, False) for r in verdicts["rows"])
    assert (outcome.experiment_dir / "transfer_summary.csv").exists()


def test_optuna_search_samples_hparams_and_reports_its_objective(ray_cluster, resnet8_weights, tmp_path):
    space = SweepSpace("optuna", fixed=dict(model="resnet8", task="digits", rewind="pretrained", rounds=2, epochs=1,
                                            weights=str(resnet8_weights), device="cpu"),
                       grid=dict(seed=[0]), sample=dict(lr=("loguniform", 0.01, 0.2)), num_samples=3,
                       weights="none", patience=100)
    outcome = run_sweep(space, tmp_path, "optuna", verbose=0)
    assert outcome.errors == []
    results = [json.loads(f.read_text().splitlines()[-1]) for f in outcome.experiment_dir.glob("*/result.json")]
    assert len(results) == 3 and len({r["config"]["lr"] for r in results}) == 3
    assert all(0.01 <= r["config"]["lr"] <= 0.2 and 0 <= r["own_max_matching_sparsity"] <= 0.3601 for r in results)


def test_transfer_sweep_with_bisection_answers_from_fewer_fine_tunes(ray_cluster, resnet8_weights, tmp_path):
    space = TransferSpace(
        "t", upstream=dict(model="resnet8", task="shapes", rewind="pretrained", epochs=1, weights=str(resnet8_weights),
                           device="cpu"),
        downstream={"digits": dict(epochs=1, device="cpu")}, rounds=[1, 2, 3, 4, 5, 6], seeds=[0, 1],
        weights="none", search="bisect")
    outcome = run_sweep(space, tmp_path, "bisect", verbose=0)
    assert outcome.errors == []
    answer = outcome.transfer["search"]["digits"]
    assert answer["finished"] and answer["fine_tunes"] < answer["exhaustive_fine_tunes"] == 12
    tickets = [r for r in _rows(outcome.experiment_dir) if "-m_shapes-" in r["trial_name"]]
    assert len(tickets) == answer["fine_tunes"]  # the sweep ran exactly what the search asked for
    assert (outcome.experiment_dir / "max_matching_search.csv").exists()


def test_weights_of_another_architecture_are_refused_before_ray_starts(resnet8_weights, tmp_path):
    """One message naming the file and the keys, from the driver, before any Ray instance."""
    result = subprocess.run([sys.executable, str(ROOT / "launchers" / "sweep.py"), "--storage", str(tmp_path),
                             "--weights", str(resnet8_weights), "--set", "model=resnet20"],
                            capture_output=True, text=True, timeout=120)
    output = result.stderr + result.stdout
    assert result.returncode == 2 and "weights:" in result.stderr and str(resnet8_weights.name) in result.stderr
    assert "missing keys" in result.stderr and "Traceback" not in output
    assert "Started a local Ray instance" not in output and "Ray:" not in output
