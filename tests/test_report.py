"""The report of a small finished experiment: tables and PNG figures, without rerunning anything."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from ray_lth.analysis.report import write_report
from ray_lth.config import ImpConfig
from ray_lth.imp import run_trajectory
from ray_lth.naming import group_name, trial_name
from ray_lth.storage import location
from ray_lth.tasks import build_task

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ["trial_id", "trial_name", "group", "seed", "round", "sparsity", "nominal_sparsity", "metric",
           "matching", "epochs", "round_seconds", "bookkeeping_seconds"]


def _make_experiment(folder, model="resnet8", fractions=(0.2, 0.4)):
    """Groups (θ_0 rewinding, one per prune fraction) x two seeds, 2 rounds, laid out as a sweep
    writes them: <trial name>/params.json, <trial name>/trajectory/, results.csv."""
    rows = []
    task = build_task("digits")  # built once, shared by the trajectories
    for fraction in fractions:
        for seed in (0, 1):
            config = dict(model=model, task="digits", rewind="init", rounds=2, epochs=1, batch_size=128,
                          device="cpu", seed=seed, prune_fraction=fraction)
            name = trial_name(config)
            (folder / name).mkdir(parents=True)
            (folder / name / "params.json").write_text(json.dumps(config))
            imp_config = ImpConfig.from_dict(config)
            for result in run_trajectory(imp_config, task=task):
                result.state.save(folder / name / "trajectory")
                r = result.record
                rows.append({"trial_id": name[-8:], "trial_name": name, "group": group_name(config), "seed": seed,
                             "round": r.round, "sparsity": r.sparsity, "nominal_sparsity": imp_config.sparsity_after(r.round),
                             "metric": r.metric, "matching": "", "epochs": r.epochs, "round_seconds": r.seconds,
                             "bookkeeping_seconds": 0.0})
    with open(folder / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return folder, rows


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    torch.set_num_threads(1)  # module fixtures run before conftest's per-test one-thread fixture
    return _make_experiment(tmp_path_factory.mktemp("exp") / "tiny")


def _valid_png(path):
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        return image.format == "PNG" and min(image.size) > 100


def test_report_writes_tables_and_valid_png_figures(experiment):
    folder, rows = experiment
    readme = write_report(folder)
    report = folder / "report"
    pngs = sorted(p.name for p in report.glob("*.png"))
    assert {"curves_digits.png", "zero_kernels.png", "similarity.png", "similarity_by_sparsity.png"} <= set(pngs)
    assert len([p for p in pngs if p.startswith("heatmap_")]) == 2  # one per group
    assert all(_valid_png(report / p) for p in pngs)
    text = readme.read_text()
    assert all(f"]({p})" in text for p in pngs)  # every figure is linked from README.md
    with open(report / "max_matching.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 2 and {r["kind"] for r in table} == {"imp"}
    assert {r["rewind_scope"] for r in table} == {"all"}  # a results.csv without the column: whole-model rounds
    for r in table:  # against the rows directly: the band is the group's round 0 over both seeds
        (group,) = r["groups"].split()
        dense = [float(x["metric"]) for x in rows if x["group"] == group and int(x["round"]) == 0]
        assert float(r["dense_mean"]) == pytest.approx(sum(dense) / 2) and r["seeds"] == "2"
    with open(report / "similarity.csv", newline="") as f:
        similarity = list(csv.DictReader(f))
    assert len(similarity) == 4 and all(float(row[row["mask"]]) == 1.0 for row in similarity)


def test_report_launcher_runs_on_the_folder_and_names_a_missing_one(experiment, tmp_path):
    folder, _ = experiment
    done = subprocess.run([sys.executable, str(ROOT / "launchers" / "report.py"), str(folder)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "report/README.md" in done.stdout
    missing = subprocess.run([sys.executable, str(ROOT / "launchers" / "report.py"), str(tmp_path / "nothing")],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "results.csv" in missing.stderr


def test_sweep_end_writes_the_report_and_a_plotting_failure_only_logs(experiment, monkeypatch, capsys):
    from ray_lth.tune import sweep

    folder, _ = experiment
    assert sweep._report(folder) == location(folder / "report" / "README.md")

    def broken(_):
        raise RuntimeError("no fonts")

    monkeypatch.setattr(sweep, "write_report", broken)
    assert sweep._report(folder) is None
    assert "report was not written (RuntimeError: no fonts)" in capsys.readouterr().err


def test_compare_draws_models_of_different_sizes_by_remaining_weights(experiment, tmp_path):
    """A depth comparison (section 5.3): masks of different models are never compared with
    each other, and the curves are drawn over the count of remaining weights."""
    folder, _ = experiment
    other, _ = _make_experiment(tmp_path / "convnet", model="convnet", fractions=(0.2,))
    write_report(other, compare=[folder])
    assert _valid_png(other / "report" / "curves_digits_remaining.png")
