"""Everything only a GPU can show, measured in one command into one file.

    python benchmarks/gpu_check.py --out gpu_check.json          # a GPU machine: <= 8 min, nothing downloaded
    python benchmarks/gpu_check.py --cpu-smoke --out smoke.json  # every part tiny on the CPU, as CI runs it
    python benchmarks/gpu_check.py --parts data_parallel paper_cifar --out rerun.json   # some parts again
    python benchmarks/gpu_check.py --keep check_files ...   # keep the sweeps' folders and logs there

Parts, in this order; each is measured side by side within this one run:
- masked_step: a masked (ray_lth.train.MaskedParameters) against a dense training step of
  ResNet-50 at 224 px, batch 64, 79 % sparsity, in fp32 and bf16 (benchmarks/masked_step.py);
  target masked / dense <= 1.01. Also the bf16 speedup of the dense step.
- fractional_trials: the temperature ablation (search_spaces/simclr_temperature.py, 4
  temperatures) at 0.25 GPU a trial, then the same 4 trials at 1 GPU each, one after another;
  the throughput ratio (target >= 2.5x for small SSL trials that leave the GPU idle). The upstream
  ticket is derived once beforehand, at IMP round 1 (the trials' size does not depend on it).
- data_parallel: round 1 of ResNet-50 on shapes (96 px, global batch 256, 2 epochs) through
  Ray Train with 1 GPU worker (NCCL; ray_lth.tune.data_parallel) against the same round trained
  in this process, as a trial trains it: the next masks (identical?) and the time ratio. cuDNN's
  non-deterministic kernels may make a few mask entries differ on a GPU; the count is recorded.
- data_pipeline: CIFAR-format files through the cifar10 task's loaders with 0 and CPUs - 1
  loader workers (pinned memory), images/s alone and with a resnet18_cifar step
  (benchmarks/data_pipeline.py).
- default_sweep: the `quick` sweep (launchers/sweep.py) on the GPU in fp32 (6 trials at 0.16 GPU),
  on the CPU (1 CPU a trial) and on the GPU in bf16: wall time, core and GPU utilisation, and
  whether each GPU run's results.csv gives every (arm, seed, round) the CPU run's verdict (the
  differences are listed per run, so a difference that only bf16 shows is told apart).
- paper_cifar: CI's dry run of the paper_cifar space (tests/paper_files.py: a torchvision
  ResNet-50 file, CIFAR-10 pickles, 2 seeds, rounds 0..1) at 0.5 GPU a trial, end to end; with
  --cpu-smoke it is the very run tests/test_paper_dry_run.py checks (on the CPU, 1 CPU a trial).

Each part runs under its own time budget (and all under --minutes); one that fails or runs out
records its error next to the figures it had measured, and the next part runs. The JSON (the
machine: GPU, torch, CUDA, CPUs, git commit; then each part's figures, or ``skipped`` with the
reason, or ``error``) is rewritten after every part, so a killed run keeps what it measured.
Without a CUDA device every part is ``skipped: no CUDA device``. ``--cpu-smoke`` runs every part
in seconds on the CPU (resnet8, 16 px, a few steps, 1-2 rounds, fractional CPUs instead of GPUs),
so that CI (tests/test_gpu_check.py) keeps each code path working; its figures mean nothing.
Each sweep's folder and its launcher's output (``sweeps/NAME.log``) stay under ``--keep DIR``.
Exit status 1 when a part errored.
"""

import argparse
import contextlib
import csv
import dataclasses
import json
import logging
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from data_pipeline import measure_workers  # noqa: E402
from ddp_scaling import round_start  # noqa: E402
from masked_step import median_step_seconds  # noqa: E402
from paper_files import (PAPER_CIFAR_DRY_RUN, PAPER_CIFAR_ROUNDS, PAPER_CIFAR_SEEDS, write_cifar10,  # noqa: E402
                         write_torchvision_resnet50)
from ray_lth.ablation import derive_upstream_mask  # noqa: E402
from ray_lth.cli import format_table  # noqa: E402
from ray_lth.config import ImpConfig  # noqa: E402
from ray_lth.device import PRECISIONS  # noqa: E402
from ray_lth.imp import train_round  # noqa: E402
from ray_lth.pretrain import EMBEDDED_RECIPE, pretrain  # noqa: E402
from ray_lth.pruning import prune  # noqa: E402
from ray_lth.spaces import load_space, resolve_weights  # noqa: E402
from ray_lth.storage import location  # noqa: E402
from ray_lth.tasks import build_task  # noqa: E402
from ray_lth.tasks.loading import process_cpus  # noqa: E402

NO_CUDA = "no CUDA device"


class PartTimeout(Exception):
    """A part ran past its budget (raised by SIGALRM wherever the part was)."""


@dataclasses.dataclass
class Check:
    """What the parts share: the mode, the device, a scratch folder, one Ray instance (started on
    first need, or joined at --address) and the smoke run's small θ_p."""

    mode: str
    device: torch.device
    work: Path
    address: Optional[str] = None
    ends_at: float = float("inf")  # the current part's deadline (time.monotonic)
    _theta_p: Optional[Path] = None

    def ray(self) -> str:
        import ray

        if not ray.is_initialized():
            # quiet: the parts record their trials' errors; Ray's log lines would bury the table
            options = dict(logging_level=logging.WARNING, log_to_driver=False)
            if self.address:
                ray.init(address=self.address, **options)
            else:
                ray.init(address="local", include_dashboard=False, _temp_dir=str(self.work / "ray"), **options)
            self.address = ray.get_runtime_context().gcs_address
        return self.address

    def theta_p(self) -> Path:
        """Smoke mode's θ_p: resnet8 pre-trained for one epoch on shapes (the tests' fixture)."""
        if self._theta_p is None:
            self._theta_p = self.work / "resnet8-shapes.pt"
            pretrain("resnet8", self._theta_p, {**EMBEDDED_RECIPE, "epochs": 1}, device="cpu")
        return self._theta_p

    def remaining(self) -> float:
        return max(1.0, self.ends_at - time.monotonic())

    def close(self) -> None:
        import ray

        if ray.is_initialized():
            ray.shutdown()  # a joined cluster stays up; one started here goes with its driver


# ---------------------------------------------------------------------------------------------- parts

MASKED_STEP = {"gpu": dict(model="resnet50", image_size=224, batch_size=64, steps=30),
               "smoke": dict(model="resnet8", image_size=16, batch_size=8, steps=2)}


def masked_step(check: Check, figures: dict) -> None:
    size = MASKED_STEP[check.mode]
    figures.update(size, sparsity=0.7903, target="masked / dense <= 1.01")
    dense = {}
    for precision in PRECISIONS:
        medians = median_step_seconds(size["model"], ("dense", "ray_lth"), check.device, precision,
                                      size["image_size"], size["batch_size"], size["steps"])
        ratio = medians["ray_lth"] / medians["dense"]
        dense[precision] = medians["dense"]
        figures[precision] = {"dense_ms": 1000 * medians["dense"], "masked_ms": 1000 * medians["ray_lth"],
                              "masked_over_dense": ratio, "meets_target": ratio <= 1.01}
    figures["bf16_speedup_dense"] = dense["fp32"] / dense["bf16"]


ABLATION = {"gpu": dict(overrides=dict(temperature=[0.1, 0.5, 2.0, 10.0], device="cuda"),
                        shared=dict(gpus_per_trial=0.25), alone=dict(gpus_per_trial=1.0)),
            "smoke": dict(overrides=dict(temperature=[0.5, 2.0], model="resnet8", device="cpu", epochs=1,
                                         batch_size=32, train_images=64, eval_images=64, retrieval_batch_size=32,
                                         downstream_epochs=1),
                          shared=dict(cpus_per_trial=0.5), alone=dict(cpus_per_trial=None))}
# None: 3/4 of Ray's CPUs, so that one trial runs at a time (on CI's 2 CPUs with one torch thread,
# as the shared trials: a trial of 2 threads on 2 busy cores crawls)


def fractional_trials(check: Check, figures: dict) -> None:
    import ray

    from ray_lth.tune.ablation import run_temperature_ablation

    size = ABLATION[check.mode]
    space = load_space("simclr_temperature").with_overrides(size["overrides"])
    space = dataclasses.replace(space, mask_round=1, target_sparsity=1 - 0.8**2)
    space = resolve_weights(space, str(check.theta_p()) if check.mode == "smoke" else None, check.work / "cache")
    space = derive_upstream_mask(space, str(check.work / "cache"))  # once, before either run
    check.ray()
    trials = len(space.trials())
    figures.update(trials=trials, target="throughput ratio >= 2.5")
    for label in ("shared", "alone"):
        resources = {k: 0.75 * ray.cluster_resources()["CPU"] if v is None else v for k, v in size[label].items()}
        started = time.perf_counter()
        outcome = run_temperature_ablation(dataclasses.replace(space, **resources), str(check.work / "ablation"),
                                           f"ablation_{label}", verbose=0)
        wall = time.perf_counter() - started
        if outcome.errors or len(outcome.rows) != trials:
            raise RuntimeError(f"{label}: {len(outcome.rows)} of {trials} trials reported; {outcome.errors[:1]}")
        figures[label] = {**resources, "wall_s": wall, "trials_per_min": 60 * trials / wall,
                          "trial_s_mean": statistics.mean(r["seconds"] for r in outcome.rows)}
    ratio = figures["alone"]["wall_s"] / figures["shared"]["wall_s"]
    figures.update(throughput_ratio=ratio, meets_target=ratio >= 2.5)


DATA_PARALLEL = {"gpu": dict(config=dict(model="resnet50", task="shapes", rewind="init", epochs=2, batch_size=256,
                                         image_size=96, device="cuda"), cpus=4, gpus=1),
                 "smoke": dict(config=dict(model="resnet8", task="digits", rewind="init", epochs=1, batch_size=64,
                                           image_size=16, device="cpu"), cpus=1, gpus=0)}


def data_parallel(check: Check, figures: dict) -> None:
    from ray_lth.tune.data_parallel import DataParallelRounds, WorkerResources

    size = DATA_PARALLEL[check.mode]
    config = ImpConfig.from_dict({**size["config"], "workers_per_trial": 1})
    figures.update(size["config"], backend="nccl" if size["gpus"] else "gloo", workers=1)
    task = build_task(config.task, None, config.image_size, **config.task_options)
    start = round_start(config, task)  # round 1 under a 20 % mask
    threads = torch.get_num_threads()
    torch.set_num_threads(size["cpus"])  # as many as the Ray Train worker gets: the same arithmetic
    try:
        started = time.perf_counter()
        in_trial = train_round(config, task, 1, start, check.device)
        figures["in_trial_s"] = time.perf_counter() - started
    finally:
        torch.set_num_threads(threads)
    check.ray()
    storage = location(check.work / "data_parallel")
    storage.fs.create_dir(storage.path, recursive=True)
    runner = DataParallelRounds(WorkerResources(size["cpus"], size["gpus"]), storage.fs, storage.path)
    started = time.perf_counter()
    through_ray = runner(config, task, 1, start, check.device)
    figures["ray_train_s"] = time.perf_counter() - started
    trained = [{k: t.cpu() for k, t in r.trained.items()} for r in (in_trial, through_ray)]
    masks = [prune("global", weights, start.mask, config.prune_fraction) for weights in trained]
    differing = sum(int((masks[0][k] != masks[1][k]).sum()) for k in masks[0])
    weights_gap = max(float((trained[0][k] - trained[1][k]).abs().max()) for k in trained[0])
    figures.update(time_ratio=figures["ray_train_s"] / figures["in_trial_s"],
                   ray_train_overhead_s=figures["ray_train_s"] - figures["in_trial_s"],
                   masks_identical=differing == 0, mask_entries_differing=differing,
                   trained_weights_max_abs_diff=weights_gap,
                   metric_in_trial=float(in_trial.metrics[task.metric]),
                   metric_ray_train=float(through_ray.metrics[task.metric]))


PIPELINE = {"gpu": dict(images=10000, batch_size=256, step_batches=10**9, model="resnet18_cifar"),
            "smoke": dict(images=128, batch_size=32, step_batches=1, model="resnet8")}


def data_pipeline(check: Check, figures: dict) -> None:
    size = PIPELINE[check.mode]
    figures.update(size)
    workers = sorted({0, max(1, process_cpus() - 1)})
    with tempfile.TemporaryDirectory(dir=check.work) as root:
        write_cifar10(root, n_train=size["images"], n_test=100)
        for count in workers:
            figures[f"workers_{count}"] = measure_workers(root, count, check.device, size["batch_size"],
                                                          size["step_batches"], size["model"])


# the quick space's 6 trials share the GPU (0.16 each) or take a CPU each
SWEEP = {"gpu": dict(common=["--space", "quick"],
                     runs={"gpu_fp32": ["--set", "device=cuda", "--gpus-per-trial", "0.16"],
                           "cpu_fp32": ["--set", "device=cpu", "--gpus-per-trial", "0"],
                           "gpu_bf16": ["--set", "device=cuda", "--gpus-per-trial", "0.16",
                                        "--set", "precision=bf16"]}),
         "smoke": dict(common=["--space", "quick", "--set", "model=resnet8", "--set", "task=digits", "--set",
                               "pruning=global", "--set", "rounds=1", "--set", "epochs=1", "--set", "seed=[0]"],
                       runs={"cpu_bf16": ["--set", "device=cpu", "--set", "precision=bf16", "--cpus-per-trial", "0.5"],
                             "cpu_fp32": ["--set", "device=cpu"]})}
REFERENCE_RUN = "cpu_fp32"


def default_sweep(check: Check, figures: dict) -> None:
    size = SWEEP[check.mode]
    common = size["common"] + (["--weights", str(check.theta_p())] if check.mode == "smoke" else [])
    rows = {}
    for name, flags in size["runs"].items():
        figures[name], rows[name] = launch(check, f"sweep_{name}", [*common, *flags])
        if REFERENCE_RUN in rows:  # each run against the CPU's, once both are in
            for run in rows.keys() - {REFERENCE_RUN}:
                figures[run].setdefault("against_cpu", compare_verdicts(rows[run], rows[REFERENCE_RUN]))


PAPER = {"gpu": ["--gpus-per-trial", "0.5", "--cpus-per-trial", "1"],
         "smoke": ["--gpus-per-trial", "0", "--cpus-per-trial", "1"]}


def paper_cifar(check: Check, figures: dict) -> None:
    files = check.work / "paper"
    files.mkdir(exist_ok=True)
    write_torchvision_resnet50(files / "resnet50-theta_img.pth")
    write_cifar10(files / "data", n_train=60, n_test=40)  # as tests/test_paper_dry_run.py
    flags = ["--space", "paper_cifar", "--weights", str(files / "resnet50-theta_img.pth"), "--data-root",
             str(files / "data"), *PAPER_CIFAR_DRY_RUN, *PAPER[check.mode]]
    run, rows = launch(check, "paper_cifar", flags)
    reported = sorted((int(r["seed"]), int(r["round"])) for r in rows)
    expected = [(s, k) for s in PAPER_CIFAR_SEEDS for k in range(PAPER_CIFAR_ROUNDS + 1)]
    if reported != expected:
        raise RuntimeError(f"results.csv holds (seed, round) {reported}, not {expected}")
    figures.update(run, rounds_reported=len(reported), report_written=(check.work / "sweeps" / "paper_cifar" /
                                                                       "report" / "README.md").is_file())


# each part's budget in seconds, 8 min in all (--cpu-smoke: twice each, for CI's slow shared cores;
# its paper_cifar is CI's dry run at full size)
PARTS = {"masked_step": (masked_step, 30), "fractional_trials": (fractional_trials, 90),
         "data_parallel": (data_parallel, 50), "data_pipeline": (data_pipeline, 30),
         "default_sweep": (default_sweep, 220), "paper_cifar": (paper_cifar, 90)}


# ---------------------------------------------------------------------------------------------- helpers

def launch(check: Check, name: str, flags: list) -> tuple:
    """Run launchers/sweep.py on this check's Ray instance; ({wall, timing, utilisation}, rows).
    Its output (with the trials' own log lines) goes to sweeps/NAME.log."""
    storage = check.work / "sweeps"
    command = [sys.executable, str(ROOT / "launchers" / "sweep.py"), "--address", check.ray(), "--storage",
               str(storage), "--name", name, "--verbose", *flags]
    with GpuUtilisation(check.device) as gpu:
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, timeout=check.remaining())
        wall = time.perf_counter() - started
    storage.mkdir(parents=True, exist_ok=True)
    (storage / f"{name}.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        output = (done.stdout + done.stderr)[-1500:]
        raise RuntimeError(f"{name}: launchers/sweep.py exited {done.returncode}: {output}")
    timing = json.loads((storage / name / "timing.json").read_text())
    with open(storage / name / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return {"wall_s": wall, "tuning_wall_s": timing["tuning_wall_s"], "core_utilisation": timing["core_utilisation"],
            "gpu_utilisation_pct": gpu.mean, "rounds": len(rows)}, rows


_MEASURED = {"trial_id", "trial_name", "group", "sparsity", "nominal_sparsity", "metric", "matching", "epochs",
             "round_seconds", "bookkeeping_seconds"}


def compare_verdicts(rows: list, reference: list) -> dict:
    """Each (arm, seed, round)'s verdict ('matching') in ``rows`` against ``reference``; the
    group's name is left out, since a changed setting (precision) renames it."""
    def by_key(table):
        return {tuple((k, v) for k, v in row.items() if k not in _MEASURED): row for row in table}

    ours, theirs = by_key(rows), by_key(reference)
    shared = sorted(set(ours) & set(theirs))
    differing = [f"{dict(k)}: {ours[k]['matching']!r} vs {theirs[k]['matching']!r}" for k in shared
                 if ours[k]["matching"] != theirs[k]["matching"]]
    return {"verdicts_identical": not differing and set(ours) == set(theirs), "rounds_compared": len(shared),
            "verdicts_differing": differing, "rounds_only_in_one_run": len(set(ours) ^ set(theirs)),
            "metric_max_abs_diff": max((abs(float(ours[k]["metric"]) - float(theirs[k]["metric"])) for k in shared),
                                       default=None)}


class GpuUtilisation:
    """The mean GPU utilisation (%) sampled every 0.5 s inside the with-block (NVML through torch,
    else nvidia-smi); None without a GPU or either."""

    def __init__(self, device: torch.device):
        self.device, self.samples, self.mean = device, [], None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _read(self):
        try:
            return float(torch.cuda.utilization(self.device))
        except Exception:  # no pynvml: ask nvidia-smi
            out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                  "-i", str(self.device.index or 0)], capture_output=True, text=True, timeout=5)
            return float(out.stdout.strip())

    def _sample(self):
        while not self._stop.wait(0.5):
            with contextlib.suppress(Exception):
                self.samples.append(self._read())

    def __enter__(self):
        if self.device.type == "cuda":
            with contextlib.suppress(Exception):
                self._read()
                self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.mean = statistics.mean(self.samples) if self.samples else None


def environment(commit: str = None) -> dict:
    import ray

    cuda = torch.cuda.is_available()
    if commit is None:
        git = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty", "--abbrev=40"],
                             capture_output=True, text=True)
        commit = git.stdout.strip() if git.returncode == 0 else "unknown (no git checkout: give --commit)"
    return {"device": torch.cuda.get_device_name(0) if cuda else f"CPU only ({NO_CUDA})",
            "gpus": torch.cuda.device_count(), "torch": torch.__version__, "cuda": torch.version.cuda,  # torch's build
            "cudnn": torch.backends.cudnn.version() if cuda else None, "ray": ray.__version__,
            "python": platform.python_version(), "cpus": process_cpus(), "git_commit": commit,
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def run_part(name: str, check: Check, budget: float) -> dict:
    """The part's figures with its status, seconds and budget; an error or a timeout is recorded
    next to whatever the part had measured."""
    if check.mode == "gpu" and not torch.cuda.is_available():
        return {"status": "skipped", "skipped": NO_CUDA}
    function, _ = PARTS[name]
    figures, timed_out = {}, []

    def out_of_time(signum, frame):
        timed_out.append(True)
        raise PartTimeout(f"ran past its budget of {budget:.0f} s")

    check.ends_at = time.monotonic() + budget
    previous = signal.signal(signal.SIGALRM, out_of_time)
    signal.setitimer(signal.ITIMER_REAL, budget)
    started = time.perf_counter()
    try:
        function(check, figures)
        status = {"status": "ok"}
    except Exception as error:
        # the alarm may surface wrapped by the code it interrupted (Ray's C++ core: SystemError)
        message = f"ran past its budget of {budget:.0f} s" if timed_out else f"{type(error).__name__}: {error}"
        status = {"status": "error", "error": message, "traceback": traceback.format_exc(limit=-4)}
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    if check.device.type == "cuda":
        torch.cuda.empty_cache()  # the next part (or its Ray workers) gets the memory back
    return {**status, "seconds": time.perf_counter() - started, "budget_s": budget, **figures}


def table_rows(name: str, figures: dict, prefix: str = "") -> list:
    rows = []
    for key, value in figures.items():
        if key in ("traceback", "budget_s"):
            continue
        if isinstance(value, dict):
            rows += table_rows(name, value, f"{prefix}{key}.")
        else:
            rows.append([name, f"{prefix}{key}", _show(value)])
    return rows


def _show(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:,.0f}"
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 100 else text[:97] + "..."


def write_json(path: Path, report: dict) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(report, indent=1))
    os.replace(partial, path)  # a killed run never leaves half a file


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    parser.add_argument("--cpu-smoke", action="store_true", help="every part tiny, on the CPU (CI)")
    parser.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS))
    parser.add_argument("--minutes", type=float, default=8.0, help="all parts together stop by then")
    parser.add_argument("--address", help="an existing Ray instance to use (default: start one here)")
    parser.add_argument("--commit", help="the git commit to record, where this tree is a copy without .git")
    parser.add_argument("--keep", type=Path, help="the parts' files (sweeps' folders and logs) go here and stay "
                                                  "(default: a temporary folder, deleted at the end)")
    args = parser.parse_args(argv)
    mode = "smoke" if args.cpu_smoke else "gpu"
    # Ray's workers and the launchers import this tree's ray_lth, whatever is installed
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # as the launcher: verbose=0 then means quiet
    report = {"command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
              "mode": mode, "environment": environment(args.commit), "parts": {}}
    work = args.keep or Path(tempfile.mkdtemp(prefix="ray_lth_gpu_check_"))
    work.mkdir(parents=True, exist_ok=True)
    check = Check(mode, torch.device("cpu" if args.cpu_smoke else "cuda"), work, args.address)
    if args.cpu_smoke:
        torch.set_num_threads(1)  # CI's 2 cores are shared with Ray's workers
    deadline = time.monotonic() + 60 * args.minutes
    rows = []
    try:
        for name in args.parts:
            budget = min(PARTS[name][1] * (2 if args.cpu_smoke else 1), deadline - time.monotonic())
            figures = run_part(name, check, budget) if budget > 1 else {"status": "skipped",
                                                                         "skipped": f"--minutes {args.minutes} spent"}
            report["parts"][name] = figures
            write_json(args.out, report)
            rows += table_rows(name, figures)
            why = figures.get("error") or figures.get("skipped")
            print(f"{name}: {figures['status']}" + (f" ({why})" if why else f" in {figures['seconds']:.0f} s"),
                  flush=True)
    finally:
        check.close()
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\n{report['environment']['device']}, torch {torch.__version__}, mode {mode}; figures in {args.out}")
    print(format_table(["part", "figure", "value"], rows))
    return 1 if any(p["status"] == "error" for p in report["parts"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
