"""Table 2's temperature ablation: the space and its validation, the pipeline without Ray
(simCLR round under the upstream ticket -> prune to the target -> fine-tune), and the Ray side:
seven grid trials, each with the requested fractional resources."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ray_lth.ablation import (TABLE2_TEMPERATURES, derive_upstream_mask, format_temperature_table,
                              fraction_to_prune, run_ablation_trial, temperature_table)
from ray_lth.masks import load_mask, sparsity
from ray_lth.spaces import load_space

ROOT = Path(__file__).resolve().parents[1]


def _tiny(weights, **extra):
    """The shipped space, shrunk: resnet8, one epoch, a few images, ticket from IMP round 2."""
    space = load_space("simclr_temperature").with_overrides(
        dict(model="resnet8", weights=str(weights), device="cpu", epochs=1, batch_size=64, train_images=128,
             eval_images=128, retrieval_batch_size=64, **extra))
    return dataclasses.replace(space, mask_round=2, target_sparsity=1 - 0.8**3)


def test_the_space_is_table_2_and_routes_its_overrides(resnet8_weights):
    space = load_space("simclr_temperature")
    assert [t["temperature"] for t in space.trials()] == TABLE2_TEMPERATURES == [0.1, 0.2, 0.5, 1.0, 2.0, 10.0, 20.0]
    assert space.target_sparsity == pytest.approx(0.737856) and space.mask_round == 5
    routed = space.with_overrides(dict(dataset="shapes", downstream_epochs=2, model="resnet8", seed=[0, 1]))
    assert routed.upstream["dataset"] == "shapes" and "dataset" not in routed.downstream
    assert routed.downstream["epochs"] == 2 and "epochs" not in routed.upstream
    assert routed.upstream["model"] == routed.downstream["model"] == "resnet8"
    assert len(routed.trials()) == 14
    valid = routed.with_overrides(dict(weights=str(resnet8_weights)))
    assert len(valid.validate()) == 28  # a simCLR round and a fine-tune per trial


@pytest.mark.parametrize("override,message", [
    (dict(temperature=[0.5, 0.0]), "temperature must be a finite number > 0"),
    (dict(downstream_task="mnist"), "task='mnist' is not allowed"),
    (dict(projection_dim=0), "projection_dim must be an integer >= 1"),
    (dict(target_sparsity=1.5), "target_sparsity must be in"),
    (dict(mask_file="/nonexistent.rlthmask"), "mask_file='/nonexistent.rlthmask': no such file"),
])
def test_invalid_spaces_name_the_field(resnet8_weights, override, message):
    space = load_space("simclr_temperature").with_overrides(dict(weights=str(resnet8_weights), **override))
    with pytest.raises(ValueError, match=message):
        space.validate()


def test_the_launcher_rejects_an_invalid_ablation_before_ray_starts(resnet8_weights, tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "launchers" / "sweep.py"), "--space", "simclr_temperature",
                             "--storage", str(tmp_path), "--weights", str(resnet8_weights), "--set", "model=resnet8",
                             "--set", "temperature=[0.5, -1]"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "temperature must be a finite number > 0, got -1" in result.stderr
    assert "Started a local Ray instance" not in result.stderr + result.stdout


def test_one_trial_trains_the_ticket_prunes_it_to_the_target_and_fine_tunes(resnet8_weights, tmp_path):
    space = derive_upstream_mask(_tiny(resnet8_weights), tmp_path / "cache")
    upstream = load_mask(space.mask_file)
    assert sparsity(upstream) == pytest.approx(1 - 0.8**2, abs=1e-4)  # IMP round 2 on simCLR
    modified = Path(space.mask_file).stat().st_mtime_ns
    assert derive_upstream_mask(_tiny(resnet8_weights), tmp_path / "cache").mask_file == space.mask_file
    assert Path(space.mask_file).stat().st_mtime_ns == modified  # cached, not derived again

    row = run_ablation_trial(space, 2.0, 0, tmp_path / "trial")
    assert row["upstream_sparsity"] == pytest.approx(0.36, abs=1e-4)
    assert row["sparsity"] == pytest.approx(1 - 0.8**3, abs=1e-4)
    ticket = load_mask(row["ticket_file"])
    assert all(not (ticket[n] & ~upstream[n]).any() for n in upstream)  # nested: pruned weights stay pruned
    assert row["downstream_task"] == "digits" and row["accuracy"] > 0.2  # digits chance: 0.1
    assert 0 < row["simclr_metric"] <= 1
    assert fraction_to_prune(0.36, 1 - 0.8**3) == pytest.approx(0.2)


def test_the_table_has_one_column_per_temperature():
    rows = [dict(temperature=t, seed=s, accuracy=0.5 + 0.01 * s, simclr_metric=0.1, sparsity=0.7379)
            for t in (0.5, 0.1) for s in (0, 1)]
    table = temperature_table(rows)
    assert [r["temperature"] for r in table] == [0.1, 0.5]
    assert table[0]["accuracy_mean"] == pytest.approx(0.505) and table[0]["seeds"] == 2
    text = format_temperature_table(table)
    assert text.splitlines()[0].split()[1:] == ["0.1", "0.5"] and "50.50±0.71" in text


def _resource_probe(config):
    """A stand-in trial: reports what Ray assigned it instead of training."""
    import ray
    from ray import tune

    assigned = ray.get_runtime_context().get_assigned_resources()
    tune.report({"temperature": config["temperature"], "seed": config["seed"], "cpu": assigned.get("CPU", 0.0),
                 "accuracy": 1 / (1 + config["temperature"]), "simclr_metric": 0.0, "sparsity": 0.0})


def test_the_grid_runs_seven_trials_with_fractional_resources(ray_cluster, resnet8_weights, tmp_path):
    from ray_lth.tune.ablation import ablation_trainable, run_temperature_ablation
    from ray import tune

    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test module
    space = dataclasses.replace(load_space("simclr_temperature").with_overrides(dict(weights=str(resnet8_weights))),
                                cpus_per_trial=0.25)
    outcome = run_temperature_ablation(space, tmp_path, "ablation", trainable=_resource_probe, verbose=0)
    assert outcome.errors == []
    assert [r["temperature"] for r in outcome.rows] == TABLE2_TEMPERATURES
    reported = [json.loads(f.read_text().splitlines()[-1]) for f in outcome.experiment_dir.glob("*/result.json")]
    assert len(reported) == 7 and all(r["cpu"] == 0.25 for r in reported)  # what Ray assigned each trial
    assert (outcome.experiment_dir / "temperature_table.csv").exists()
    assert [r["accuracy_mean"] for r in outcome.table] == pytest.approx([1 / (1 + t) for t in TABLE2_TEMPERATURES])
    # on a GPU machine a quarter GPU per trial: four trials share one; the request Tune receives
    gpu_space = dataclasses.replace(space, gpus_per_trial=0.25)
    request = tune.with_resources(ablation_trainable, gpu_space.trial_resources())._resources  # Tune's own record
    assert request.required_resources == {"CPU": 0.25, "GPU": 0.25}
