"""Data-parallel rounds: 2 gloo ranks on the CPU against one process, MoCo's shuffled BN across
ranks against a brute-force reference, and a sweep whose rounds run on 2 Ray Train workers."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from ray_lth.config import ImpConfig
from ray_lth.distributed import DataParallel, ShardedBatches, check_global_batch
from ray_lth.imp import run_trajectory, train_round
from ray_lth.models import MODELS
from ray_lth.models.registry import ModelSpec
from ray_lth.tasks.ssl.moco import MoCoModel

ROOT = Path(__file__).resolve().parents[1]


class PlainNet(nn.Module):
    """No BatchNorm (whose statistics are each rank's own on a CPU, where torch has no
    SyncBatchNorm), in float64: two ranks then compute what one process computes, up to the
    order of a sum, which float64 keeps far below any gap between two weights' magnitudes."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.layer1 = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.layer2 = nn.Linear(8 * 8 * 8, 32)
        self.fc = nn.Linear(32, num_classes)
        self.double()

    def forward(self, x):
        x = torch.relu(self.layer1(torch.relu(self.conv1(x.to(torch.float64)))))
        return self.fc(torch.relu(self.layer2(x.flatten(1))))  # 16-px digits: 8x8 maps


if "dp_plain_net" not in MODELS:
    MODELS.register("dp_plain_net")(ModelSpec("dp_plain_net", PlainNet, feature_dim=32))

# digits: 1437 training images, so the last global batch of 64 (29 images) splits 15 / 14
CONFIG = dict(model="dp_plain_net", task="digits", rewind="init", rounds=2, epochs=1, batch_size=64, seed=3,
              device="cpu")


def _spawn(function, folder: Path, *args, world_size: int = 2):
    mp.spawn(function, args=(world_size, str(folder), *args), nprocs=world_size, join=True)


def _init(rank: int, world_size: int, folder: str) -> DataParallel:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/process_group", rank=rank, world_size=world_size)
    return DataParallel(rank, world_size, torch.device("cpu"))


def _trajectory_rank(rank: int, world_size: int, folder: str, config: dict) -> None:
    """One rank: the whole trajectory, each round trained as this rank (rank 0's scores shared,
    as the Ray runner returns them); what the parent compares goes to a file per rank."""
    parallel = _init(rank, world_size, folder)
    optimizers = []

    class RecordingSGD(torch.optim.SGD):  # this child process only: to read the momentum after training
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            optimizers.append(self)

    torch.optim.SGD = RecordingSGD
    checks = {}

    def runner(config, task, round_index, state, device, progress):
        trained = train_round(config, task, round_index, state, device, progress, distributed=parallel)
        metrics = [trained.metrics]
        dist.broadcast_object_list(metrics, src=0)
        trained.metrics = metrics[0]
        by_storage = {t.data_ptr(): name for name, t in trained.trained.items()}
        optimizer = optimizers[-1]
        pruned_weights, pruned_momenta, kept_momenta = [], [], []
        for p in optimizer.param_groups[0]["params"]:
            if p.data_ptr() in by_storage:
                pruned = ~state.mask[by_storage[p.data_ptr()]]
                momentum = optimizer.state[p]["momentum_buffer"]
                pruned_weights.append(p.detach()[pruned])
                pruned_momenta.append(momentum[pruned])
                kept_momenta.append(momentum[~pruned])
        checks[round_index] = {"pruned": int(sum(t.numel() for t in pruned_weights)),
                               "pruned_weights_nonzero": int(sum((t != 0).sum() for t in pruned_weights)),
                               "pruned_momenta_nonzero": int(sum((t != 0).sum() for t in pruned_momenta)),
                               "kept_momenta_nonzero": int(sum((t != 0).sum() for t in kept_momenta))}
        return trained

    results = list(run_trajectory(ImpConfig.from_dict(config), round_runner=runner))
    torch.save({"records": [r.record for r in results], "masks": [r.state.mask for r in results],
                "checks": checks},
               f"{folder}/rank{rank}.pt")
    dist.destroy_process_group()


def test_two_ranks_train_the_trajectory_one_process_trains(tmp_path):
    """Same seed, global batch and data: the same masks after every round's pruning, and scores
    within 1e-6 (float64 training; the test set is scored in float32 logits)."""
    one = list(run_trajectory(ImpConfig.from_dict(CONFIG)))
    _spawn(_trajectory_rank, tmp_path, {**CONFIG, "workers_per_trial": 2})
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    for rank in ranks:
        assert len(rank["masks"]) == len(one) == 3
        for ours, theirs in zip(rank["masks"], one):
            assert ours.keys() == theirs.state.mask.keys()
            assert all(torch.equal(ours[k], theirs.state.mask[k]) for k in ours)
        for ours, theirs in zip(rank["records"], one):
            assert ours.mask_digest == theirs.record.mask_digest and ours.start_digest == theirs.record.start_digest
            assert ours.metrics.keys() == theirs.record.metrics.keys()
            for key, value in theirs.record.metrics.items():
                assert ours.metrics[key] == pytest.approx(value, abs=1e-6), key
    assert one[-1].record.sparsity > 0.3 and one[0].record.metric > 0.3  # it learned, and it pruned
    for rank in ranks:  # rounds 1 and 2 trained under a mask: its zeros stayed zero, weights and momentum
        for round_index in (1, 2):
            check = rank["checks"][round_index]
            assert check["pruned"] > 0 and check["kept_momenta_nonzero"] > 0
            assert check["pruned_weights_nonzero"] == 0 and check["pruned_momenta_nonzero"] == 0


def _keys_rank(rank: int, world_size: int, folder: str, images: torch.Tensor, order: torch.Tensor,
               groups: int) -> None:
    parallel = _init(rank, world_size, folder)
    local = images[rank::world_size]  # this rank's share of the global batch

    def encode(group):  # a key encoder whose output depends on its group's statistics, as under BatchNorm
        return 10 * group + group.mean(dim=0, keepdim=True)

    keys = parallel.shuffled_keys(encode, local, order, groups // world_size)
    torch.save({"keys": keys, "own": parallel.own_share(keys), "gathered": parallel.gather(local)},
               f"{folder}/keys{rank}.pt")
    dist.destroy_process_group()


def test_moco_shuffled_batch_norm_across_two_ranks_is_a_permutation_undone_exactly(tmp_path):
    images = torch.randn(12, 5, generator=torch.Generator().manual_seed(0))
    order = torch.randperm(12, generator=torch.Generator().manual_seed(1))
    groups = 4  # shuffle_bn_splits: 2 groups of 3 keys on each rank
    _spawn(_keys_rank, tmp_path, images, order, groups)
    # brute force: image i sits at position p of the shuffled batch, in group p // 3; its key is
    # 10·x_i plus the mean of that group's images
    position = {int(i): p for p, i in enumerate(order)}
    expected = torch.stack([10 * images[i] + images[order[(position[i] // 3) * 3:(position[i] // 3 + 1) * 3]].mean(0)
                            for i in range(12)])
    unshuffled = torch.stack([10 * images[i] + images[(i // 3) * 3:(i // 3 + 1) * 3].mean(0) for i in range(12)])
    assert not torch.allclose(expected, unshuffled)  # the shuffle changes which keys share statistics
    one_process = MoCoModel.keys(SimpleNamespace(key=lambda g: 10 * g + g.mean(0, keepdim=True),
                                                 shuffle_bn_splits=groups), images, order)
    for rank in range(2):
        result = torch.load(tmp_path / f"keys{rank}.pt")
        assert torch.equal(result["gathered"], images)  # the shares back in the global batch's order
        assert torch.allclose(result["keys"], expected, atol=1e-6, rtol=0)
        assert torch.allclose(result["keys"], one_process, atol=1e-6, rtol=0)
        assert torch.equal(result["own"], result["keys"][rank::2])


MOCO = dict(model="resnet8", task="moco", rewind="init", rounds=0, epochs=1, batch_size=32, seed=0, device="cpu",
            train_images=128, eval_images=64, queue_size=64, shuffle_bn_splits=4, retrieval_batch_size=32)


def _moco_rank(rank: int, world_size: int, folder: str) -> None:
    parallel = _init(rank, world_size, folder)
    from ray_lth.imp import _fresh_model
    from ray_lth.masks import ones_mask
    from ray_lth.models import get_model_spec, prunable_parameters
    from ray_lth.rewind import capture_state
    from ray_lth.tasks import build_task, wrap_for_training

    config = ImpConfig.from_dict({**MOCO, "workers_per_trial": world_size})
    task = build_task(config.task, None, config.image_size, **config.task_options)
    spec, model = _fresh_model(config, task.num_outputs, 0)
    trained_model = wrap_for_training(task, model, spec)
    start = SimpleNamespace(mask=ones_mask(prunable_parameters(model, get_model_spec(config.model).never_pruned)),
                            rewind_state=capture_state(model, trained_model), restored_keys=None, carried=None)
    trained = train_round(config, task, 0, start, torch.device("cpu"), distributed=parallel)
    torch.save({"metrics": trained.metrics, "trained": trained.trained}, f"{folder}/moco{rank}.pt")
    dist.destroy_process_group()


def test_a_moco_round_trains_over_two_ranks_in_step(tmp_path):
    """MoCo's distributed loss (DDP through the query encoder, keys shuffled across ranks, the
    queue fed by both): both ranks end on the same weights; only rank 0 scores."""
    _spawn(_moco_rank, tmp_path)
    ranks = [torch.load(tmp_path / f"moco{r}.pt") for r in range(2)]
    assert all(torch.equal(ranks[0]["trained"][k], ranks[1]["trained"][k]) for k in ranks[0]["trained"])
    assert ranks[0]["metrics"]["iterations"] == ranks[1]["metrics"]["iterations"] == 4  # 128 images / 32
    assert ranks[0]["metrics"]["train_loss"] == ranks[1]["metrics"]["train_loss"] > 0
    assert 0 <= ranks[0]["metrics"]["contrastive_top1"] <= 1 and "contrastive_top1" not in ranks[1]["metrics"]


def test_sharded_batches_cover_each_global_batch_once_and_the_batch_must_divide():
    batches = [list(range(0, 64)), list(range(64, 93))]
    shares = [list(ShardedBatches(batches, rank, 2)) for rank in range(2)]
    for index, batch in enumerate(batches):
        assert sorted(shares[0][index] + shares[1][index]) == batch
    assert [len(s[1]) for s in shares] == [15, 14]
    assert check_global_batch(256, 8) == 32
    with pytest.raises(ValueError, match="batch_size=100 is the global batch.*multiple of 8"):
        ImpConfig.from_dict({**CONFIG, "batch_size": 100, "workers_per_trial": 8})
    with pytest.raises(ValueError, match="data-parallel rounds run in a sweep"):
        list(run_trajectory(ImpConfig.from_dict({**CONFIG, "workers_per_trial": 2})))


def _launch(address, storage, name, weights, epochs, *extra):
    """A one-trial sweep of round 0 alone trained on 2 Ray Train workers of 1 CPU each: the shared
    instance's 2 CPUs, the obvious command (the trial itself reserves no CPU)."""
    command = [sys.executable, str(ROOT / "launchers" / "sweep.py"), "--address", address, "--storage", str(storage),
               "--name", name, "--space", "quick", "--weights", str(weights), "--set", "model=resnet8",
               "--set", "task=digits", "--set", "pruning=global", "--set", "seed=[0]", "--set", "rounds=0",
               "--set", f"epochs={epochs}", "--set", "device=cpu", "--patience", "100",
               "--workers-per-trial", "2", *extra]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _rows(experiment):
    with open(experiment / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def _results(experiment):
    return [json.loads(line) for f in experiment.glob("*/result.json") for line in f.read_text().splitlines()
            if line.strip()]


def _trial_failures(experiment):
    """Each trial's failure count as Tune's experiment state records it."""
    (state,) = experiment.glob("experiment_state-*.json")
    return [json.loads(runtime)["num_failures"] for _, runtime in json.loads(state.read_text())["trial_data"]]


def _train_worker_pids():
    """The processes of the running Ray Train workers (Ray titles them ray::RayTrainWorker…)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and b"RayTrainWorker" in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
        except OSError:
            continue  # gone meanwhile
    return pids


def test_a_sweep_over_two_workers_per_trial_survives_a_rank_killed_mid_round(ray_cluster, resnet8_weights, tmp_path):
    """End to end through the launcher; one rank of round 0 is killed while it trains: Ray Train
    restarts the worker group, the round reruns from its rewind point (θ_p), and the results hold
    round 0 once, with its masks and the report."""
    launcher = _launch(ray_cluster, tmp_path, "ddp", resnet8_weights, 4)
    experiment = tmp_path / "ddp"
    deadline = time.time() + 400
    while len(_train_worker_pids()) < 2:
        assert time.time() < deadline and launcher.poll() is None, "round 0's workers never started"
        time.sleep(0.2)
    time.sleep(8)  # their setup (imports, data), then into the round's epochs
    first_attempt = set(_train_worker_pids())
    os.kill(max(first_attempt), signal.SIGKILL)
    assert not _results(experiment), "round 0 ended before the kill"
    rerun = set()
    while launcher.poll() is None:
        rerun |= set(_train_worker_pids()) - first_attempt
        time.sleep(0.2)
    output, _ = launcher.communicate(timeout=60)
    assert launcher.returncode == 0, output[-4000:]
    assert len(rerun) >= 2, output[-3000:]  # a new worker group ran the round again
    rows = _rows(experiment)
    assert [int(r["round"]) for r in rows] == [0], output[-3000:]
    assert float(rows[0]["metric"]) > 0.2  # digits: 0.1 is chance
    reported = _results(experiment)
    assert [r["round"] for r in reported] == [0]  # reported once
    assert _trial_failures(experiment) == [0]  # the trial itself never failed: Ray Train reran the round
    (trial,) = [p for p in experiment.iterdir() if (p / "trajectory").is_dir()]
    assert len(list((trial / "trajectory").glob("mask_round_*.rlthmask"))) == 2  # round 0's and the next
    assert list((trial / "data_parallel").iterdir()) == []  # each round's trainer folder went once read
    assert (experiment / "report" / "README.md").exists() and (experiment / "summary.csv").exists()


def _dp_space(weights, **resources):
    from ray_lth.spaces import SweepSpace

    fixed = dict(model="resnet8", task="digits", rewind="pretrained", rounds=1, epochs=1, weights=str(weights),
                 device="cpu", workers_per_trial=2)
    return SweepSpace("dp", fixed=fixed, grid=dict(seed=[0]), weights="none", **resources)


def test_a_data_parallel_trial_reserves_next_to_nothing_and_the_space_is_checked(resnet8_weights):
    space = _dp_space(resnet8_weights, cpus_per_trial=4, gpus_per_trial=1)
    assert space.trial_resources() == {"cpu": 0, "gpu": 0, "memory": 1}  # its workers hold the rest
    assert _dp_space(resnet8_weights).with_overrides({"workers_per_trial": 1}).trial_resources() == {"cpu": 1.0,
                                                                                                    "gpu": 0.0}
    assert [c.workers_per_trial for c in space.validate()] == [2]
    with pytest.raises(ValueError, match="workers_per_trial is one value for the whole sweep"):
        space.with_overrides({"workers_per_trial": [1, 2]}).validate()
    with pytest.raises(ValueError, match="simclr.*GPUs only: give --gpus-per-worker"):
        space.with_overrides({"task": "simclr", "rewind": "init", "weights": None}).validate()


def test_trials_whose_workers_can_never_be_placed_are_refused_before_any_trial(ray_cluster, resnet8_weights,
                                                                              tmp_path):
    import ray

    from ray_lth.tune.sweep import SweepError, check_resources, run_sweep

    # two workers of one CPU each fit a 2-CPU cluster: the trial itself reserves no CPU (resources.py)
    assert ray.cluster_resources()["CPU"] == 2
    check_resources(_dp_space(resnet8_weights, cpus_per_worker=1))
    with pytest.raises(SweepError, match=r"needs 3 CPU \(2 workers × --cpus-per-worker\) but the Ray cluster has 2"):
        run_sweep(_dp_space(resnet8_weights, cpus_per_worker=1.5), tmp_path, "toolarge", verbose=0)
    with pytest.raises(SweepError, match=r"needs 1 GPU \(2 workers × --gpus-per-worker\)"):
        run_sweep(_dp_space(resnet8_weights, gpus_per_worker=0.5), tmp_path, "nogpu", verbose=0)
