"""The paper's spaces end to end at toy size, through the real file formats (issue 12's dry run).

`launchers/sweep.py --space paper_cifar | pretrain_imagenet | pretrain_moco | pretrain_simclr` runs on
the CPU with a torchvision-format ResNet-50 θ_p, a MoCo v2 checkpoint, a converted simCLR
checkpoint, CIFAR-10 as `cifar-10-batches-py/`
pickles and ImageNet as an ImageFolder of JPEGs, all written here (paper_cifar's by the smoke GPU
check, whose run this checks). Checked from what the sweep
leaves on disk: results.csv, every round's mask, the report, the keys of θ_p loaded and skipped
(the trials' log), the CIFAR stem, each round's start state (its recorded SHA-256 against θ_p's
rewind state under that round's mask: the heads are restored bit-exact every round), and the
best-validation / best-test selection."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from paper_files import (write_imagenet_folder, write_moco_v2_checkpoint,
                         write_simclr_converted, write_torchvision_resnet50)
from ray_lth.config import ImpConfig
from ray_lth.imp import rebuilt_rewind_state
from ray_lth.masks import load_mask
from ray_lth.models import build_model
from ray_lth.rewind import state_digest
from ray_lth.tasks import build_task
from ray_lth.trajectory_state import CARRIED_FILE, TrajectoryState

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def paper_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("paper")
    theta_p = write_torchvision_resnet50(root / "resnet50-theta_img.pth")
    write_moco_v2_checkpoint(root / "moco_v2_800ep_pretrain.pth.tar", queue_size=4096)
    write_simclr_converted(root / "resnet50-1x-simclr.pth")
    write_imagenet_folder(root / "data", classes=1000, train_per_class=1, val_per_class=1, size=36)
    return root, theta_p


def _sweep(address, storage, space, *args, timeout=900):
    command = [sys.executable, str(ROOT / "launchers" / "sweep.py"), "--address", address, "--storage", str(storage),
               "--space", space, "--gpus-per-trial", "0", "--cpus-per-trial", "1", "--verbose", *args]  # --verbose: the trials' own log lines
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return done.stdout + done.stderr


def _rows(experiment):
    with open(experiment / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def _trajectories(experiment):
    folders = sorted(p / "trajectory" for p in experiment.iterdir() if (p / "trajectory" / "trajectory.json").is_file())
    return [(folder, json.loads((folder / "trajectory.json").read_text())["records"]) for folder in folders]


def _rewind_state(folder):
    """The trajectory's rewind state as a resumed trial gets it: θ_p and γ rebuilt from the trial's
    config (params.json), verified against the digest its trajectory.json records."""
    config = ImpConfig.from_dict(json.loads((folder.parent / "params.json").read_text()))
    state = TrajectoryState.load(folder)
    if state.rewind_state is not None:  # a captured θ_k%, read back
        return state.rewind_state
    task = build_task(config.task, config.data_root, config.image_size, val_images=config.val_images,
                      **config.task_options)
    return rebuilt_rewind_state(config, task, state.rewind)


def _check_every_round_started_from_the_rewind_state(folder, records):
    """Round k's recorded start digest = the rewind state (θ_p and γ) under round k's mask."""
    rewind = _rewind_state(folder)
    for record in records:
        mask = load_mask(folder / f"mask_round_{record['round']:02d}.rlthmask")
        # but for what the round carries over, trained, from the one before (rewind_scope), where the
        # folder still keeps it (the newest two rounds'); round 1 after an untrained round 0 carries its start
        carried_file = folder / CARRIED_FILE.format(record["round"])
        carried = torch.load(carried_file, weights_only=True)["entries"] if carried_file.is_file() else {}
        expected = {k: (v * mask[k].to(v.dtype) if k in mask else v) for k, v in {**rewind, **carried}.items()}
        assert record["start_digest"] == state_digest(expected), f"round {record['round']} of {folder}"
    return rewind


def _check_round_0_scores_theta_p_and_prunes_it(folder, records, theta_p):
    """The authors' order (SimCLR/main.py, main_moco_imp.py prune θ_p before training): round 0
    trains nothing, and the first mask is θ_p's own global magnitude mask over every conv but
    conv1 at 20 %, by a threshold found by sorting (entries equal to it may go either way)."""
    assert (records[0]["metrics"]["iterations"], records[0]["epochs"]) == (0, 0)
    assert all(r["metrics"]["iterations"] > 0 for r in records[1:])
    convs = [f"{name}.weight" for name, module in build_model("resnet50", 1000).named_modules()
             if isinstance(module, nn.Conv2d) and name != "conv1"]
    magnitudes = torch.cat([theta_p[k].abs().flatten() for k in convs]).sort().values
    pruned = round(0.2 * len(magnitudes))
    threshold = magnitudes[pruned - 1]
    mask = load_mask(folder / "mask_round_01.rlthmask")
    assert sorted(mask) == sorted(convs)
    assert sum(int((~mask[k]).sum()) for k in convs) == pruned
    for k in convs:
        differs = mask[k] != (theta_p[k].abs() > threshold)
        assert torch.all(theta_p[k].abs()[differs] == threshold), k


def test_paper_cifar_runs_resnet50_cifar_from_a_torchvision_file_on_cifar10_pickles(gpu_check_smoke):
    """CI's dry run is the smoke GPU check's paper_cifar part (``launchers/sweep.py --space
    paper_cifar --verbose`` with PAPER_CIFAR_DRY_RUN on these files, 1 CPU a trial): checked here
    from the folder and log it keeps, rather than run twice."""
    done, report, kept = gpu_check_smoke
    part = (report or {}).get("parts", {}).get("paper_cifar", {})
    assert part.get("status") == "ok", part.get("error") or done.stderr[-3000:]
    theta_p = torch.load(kept / "paper" / "resnet50-theta_img.pth", weights_only=True)
    log = (kept / "sweeps" / "paper_cifar.log").read_text()
    experiment = kept / "sweeps" / "paper_cifar"
    rows = _rows(experiment)
    assert sorted((int(r["seed"]), int(r["round"])) for r in rows) == [(s, k) for s in (0, 1) for k in range(2)]
    assert (experiment / "report").is_dir() and list((experiment / "report").glob("*.png"))
    # θ_p: every key but conv1 (the CIFAR stem, fresh) and fc (a new 10-way head), said so in the log
    assert "not loaded: conv1.weight (conv1: CIFAR stem" in log and "fc.weight, fc.bias (fc: task head" in log
    trajectories = _trajectories(experiment)
    assert len(trajectories) == 2
    for folder, records in trajectories:
        assert len(list(folder.glob("mask_round_*.rlthmask"))) == 3  # rounds 0..1 and the next round's
        rewind = _check_every_round_started_from_the_rewind_state(folder, records)
        loaded = [k for k in theta_p if not k.startswith(("conv1.", "fc."))]
        assert all(torch.equal(rewind[k], theta_p[k]) for k in loaded)
        assert rewind["conv1.weight"].shape == (64, 3, 3, 3) and rewind["fc.weight"].shape == (10, 2048)
        for record in records:  # best-validation selection (one epoch a round here: epoch 1)
            assert record["metrics"]["best_epoch"] == 1 and "val_top1" in record["metrics"]
    # the network the space names: 3x3/1 stem, no max-pool, layer4 4x4 at 32 px
    model = build_model("resnet50_cifar", 10)
    assert (model.conv1.kernel_size, model.conv1.stride) == ((3, 3), (1, 1))
    assert isinstance(model.maxpool, torch.nn.Identity)
    features = {}
    model.layer4.register_forward_hook(lambda module, inputs, output: features.update(layer4=output))
    model.eval()(torch.zeros(1, 3, 32, 32))
    assert features["layer4"].shape[-2:] == (4, 4)


def test_pretrain_imagenet_scores_theta_p_then_runs_imp_with_its_fc(ray_cluster, paper_files, tmp_path):
    files, theta_p = paper_files
    log = _sweep(ray_cluster, tmp_path, "pretrain_imagenet", "--weights", str(files / "resnet50-theta_img.pth"),
                 "--data-root", str(files / "data"), "--set", "epochs=1", "--set", "rounds=1",
                 "--set", "image_size=32", "--set", "batch_size=250", "--set", "num_workers=0")
    assert "heads from the file: fc" in log
    (folder, records), = _trajectories(tmp_path / "pretrain_imagenet")
    rewind = _check_every_round_started_from_the_rewind_state(folder, records)
    assert all(torch.equal(rewind[k], theta_p[k]) for k in theta_p)  # the whole file, fc included
    assert [r["epochs"] for r in records] == [0, 1]  # round 0 scores θ_p without training it
    assert all(r["metrics"]["best_epoch"] == 1 for r in records[1:])


def test_pretrain_moco_loads_the_checkpoints_mlp_as_its_projection_head(ray_cluster, paper_files, tmp_path):
    files, _ = paper_files
    checkpoint = torch.load(files / "moco_v2_800ep_pretrain.pth.tar", weights_only=True)["state_dict"]
    log = _sweep(ray_cluster, tmp_path, "pretrain_moco", "--weights", str(files / "moco_v2_800ep_pretrain.pth.tar"),
                 "--data-root", str(files / "data"), "--set", "model=resnet50", "--set", "dataset=imagenet",
                 "--set", "image_size=32", "--set", "epochs=1", "--set", "rounds=1", "--set", "seed=[0]",
                 "--set", "train_images=64", "--set", "eval_images=64", "--set", "queue_size=256",
                 "--set", "batch_size=32")
    assert "heads from the file: projection head" in log
    rows = _rows(tmp_path / "pretrain_moco")
    assert sorted((int(r["seed"]), int(r["round"])) for r in rows) == [(0, 0), (0, 1)]
    encoder_q = {k[len("module.encoder_q."):]: v for k, v in checkpoint.items() if k.startswith("module.encoder_q.")}
    for folder, records in _trajectories(tmp_path / "pretrain_moco"):
        _check_round_0_scores_theta_p_and_prunes_it(folder, records, encoder_q)  # weights_format: auto
        assert len({r["start_digest"] for r in records}) == 2  # each round its own mask, from one rewind state
        rewind = _rewind_state(folder)
        head = {k: v for k, v in rewind.items() if k.startswith("wrapper.") and k.endswith(("0.weight", "2.weight"))}
        file_head = [checkpoint["module.encoder_q.fc.0.weight"], checkpoint["module.encoder_q.fc.2.weight"]]
        assert sum(any(torch.equal(v, w) for w in file_head) for v in head.values()) >= 2, sorted(head)


def test_pretrain_simclr_from_a_converted_simclr_file_prunes_theta_p_first_with_lars_and_the_authors_loss(
        ray_cluster, paper_files, tmp_path):
    files, _ = paper_files
    theta_p = torch.load(files / "resnet50-1x-simclr.pth", weights_only=True)["state_dict"]
    log = _sweep(ray_cluster, tmp_path, "pretrain_simclr", "--weights", str(files / "resnet50-1x-simclr.pth"),
                 "--data-root", str(files / "data"), "--set", "model=resnet50", "--set", "dataset=imagenet",
                 "--set", "image_size=32", "--set", "schedule=simclr", "--set", "normalize=none",
                 "--set", "epochs=1", "--set", "rounds=2", "--set", "seed=0", "--set", "train_images=64",
                 "--set", "eval_images=64", "--set", "batch_size=32")
    assert "(simclr format), task simclr: heads from the file: none; new: projection head" in log
    (folder, records), = _trajectories(tmp_path / "pretrain_simclr")
    config = ImpConfig.from_dict(json.loads((folder.parent / "params.json").read_text()))
    assert (config.weights_format, config.train_dense) == ("auto", False)
    assert (config.train.optimizer, config.train.weight_decay, config.task_options["loss"]) == ("lars", 1e-6, "authors")
    _check_round_0_scores_theta_p_and_prunes_it(folder, records, theta_p)
    # the projection head the file lacks trains on across rounds (rewind_scope=weights_file), as SimCLR/main.py
    carried = torch.load(folder / CARRIED_FILE.format(2), weights_only=True)["entries"]
    # (and the backbone's own fc, which simCLR builds but never uses: not in what the file fills)
    assert sorted(carried) == ["fc.bias", "fc.weight"] + [f"wrapper.projector.{i}.{p}" for i in (0, 2)
                                                          for p in ("bias", "weight")]
    rewind = _check_every_round_started_from_the_rewind_state(folder, records)
    assert all(torch.equal(rewind[k], theta_p[k]) for k in theta_p if not k.startswith("fc."))
