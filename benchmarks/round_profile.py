"""One round of the default sweep (search space ``quick``), split into where its time goes.

    python benchmarks/round_profile.py [--round 1] [--threads 1] [--out round_profile.json] [--compare /work/main]

The round runs as a sweep trial runs it, without Ray: ``imp.run_trajectory`` with ``imp.train_round``
on the quick space's config (resnet8_narrow on camo_shapes, the embedded θ_p; ``--seed``,
``--pruning``), the rounds before ``--round`` un-timed, at ``--threads`` torch threads (a trial's
CPUs: 1). Its phases, in wall and CPU seconds:
- data: making the training batches (sampling, gathering, collation);
- forward, backward: the loss, and its backward pass up to the last gradient accumulated;
- optimiser + masking: zero_grad, the pruned gradients zeroed, the optimizer and LR steps;
- evaluation: scoring the test set;
- setup + rest: building the model, restoring the rewind state, digests, epoch ends;
- bookkeeping: the round's record, pruning, the mask and checkpoint writes (``TrajectoryState.save``
  and ``save_checkpoint``, as a trial writes them).
The phases are timed by wrapping the task (its batches, loss and evaluation), gradient-accumulation
hooks and the round runner: the library's code runs unchanged. The FLOP/s achieved by forward +
backward (convolutions and matmuls, counted by torch.utils.flop_counter.FlopCounterMode) is set
against a dense fp32 matmul's FLOP/s measured in the same run at the same threads: a ratio that
travels between machines, where seconds do not.

``--compare REF`` runs this profile on the checkout REF ("before", e.g. /work/main) and on this
one ("after"), each in its own process, alternately ``--repeats`` times, prints the phases side by
side with the ratio before / after (the best of the repeats), and checks that every round of both
reports the same results (metrics, sparsity, masks, start digests, bit for bit); it exits 1 if not.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("data", "forward", "backward", "optimiser + masking", "evaluation", "setup + rest", "bookkeeping")


def now():
    """(wall, CPU) seconds: CPU time stays meaningful on a machine other processes load."""
    return time.perf_counter(), time.process_time()


class PhaseClock:
    """Seconds per phase, from timestamps the timed task and hooks leave at each step's edges."""

    def __init__(self):
        self.seconds = {phase: [0.0, 0.0] for phase in PHASES}
        self.images = 0  # trained, to turn FLOPs per image into the round's FLOPs
        self._step_pending = False  # a forward pass whose backward and optimizer step are not yet booked

    def add(self, phase, since, until):
        self.seconds[phase][0] += until[0] - since[0]
        self.seconds[phase][1] += until[1] - since[1]

    def fetch_started(self):
        self.fetch_began = now()
        if self._step_pending:  # the step before: backward, then masking and the optimizer's step
            self.add("backward", self.forward_done, self.last_gradient)
            self.add("optimiser + masking", self.last_gradient, self.fetch_began)
            self._step_pending = False

    def fetch_ended(self):
        self.batch_ready = now()
        self.add("data", self.fetch_began, self.batch_ready)

    def forward_started(self):
        started = now()
        self.add("optimiser + masking", self.batch_ready, started)  # zero_grad
        return started

    def forward_ended(self, started):
        self.forward_done = self.last_gradient = now()
        self.add("forward", started, self.forward_done)
        self._step_pending = True

    def gradient_accumulated(self, _parameter):
        self.last_gradient = now()


class TimedTask:
    """The task with its training batches, loss and evaluation timed on ``clock``; all else as it is."""

    def __init__(self, task, clock: PhaseClock):
        self._task, self._clock, self._hooked = task, clock, set()

    def __getattr__(self, name):
        return getattr(self._task, name)

    def train_batches(self, *args, **kwargs):
        return self._timed_batches(self._task.train_batches(*args, **kwargs))

    def _timed_batches(self, source):
        self._clock.fetch_started()
        batches = iter(source)  # a DataLoader draws its seed from the generator here
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            self._clock.fetch_ended()
            yield batch
            self._clock.fetch_started()

    def loss(self, model, batch, device):
        if id(model) not in self._hooked:  # the end of backward: the last gradient accumulated
            self._hooked.add(id(model))
            for parameter in model.parameters():
                if parameter.requires_grad:
                    parameter.register_post_accumulate_grad_hook(self._clock.gradient_accumulated)
        started = self._clock.forward_started()
        loss = self._task.loss(model, batch, device)
        self._clock.forward_ended(started)
        self._clock.images += len(batch[1])
        return loss

    def evaluate(self, *args, **kwargs):
        return self._timed_evaluation(self._task.evaluate, *args, **kwargs)

    def evaluate_validation(self, *args, **kwargs):
        return self._timed_evaluation(self._task.evaluate_validation, *args, **kwargs)

    def _timed_evaluation(self, score, *args, **kwargs):
        started = now()
        scores = score(*args, **kwargs)
        self._clock.add("evaluation", started, now())
        return scores


def quick_config(args):
    from ray_lth.config import ImpConfig
    from ray_lth.spaces import load_space

    return ImpConfig.from_dict({**load_space("quick").fixed, "weights": args.weights, "seed": args.seed,
                                "pruning": args.pruning, "rounds": args.round})


def _round_results(record, state):
    """What a round reports and hands on, exactly (floats by repr): what two checkouts must agree on."""
    from ray_lth.masks import mask_digest

    return {"round": record.round, "sparsity": repr(record.sparsity), "metric": repr(record.metric),
            "metrics": {k: repr(v) for k, v in record.metrics.items()}, "mask_digest": record.mask_digest,
            "start_digest": record.start_digest, "next_mask_digest": mask_digest(state.mask)}


def run_profiled_trajectory(config, folder: Path, profiled_round: int):
    """Rounds 0..``profiled_round`` as a trial runs them; the last one timed. Returns (clock, the
    round's wall and CPU seconds, every round's results, the task)."""
    from ray_lth.imp import run_trajectory, train_round
    from ray_lth.tasks import build_task

    task = build_task(config.task, config.data_root, config.image_size)
    clock = PhaseClock()
    trained_in = {}

    def timed_round_runner(config, task, round_index, *rest, **kwargs):
        if round_index != profiled_round:
            return train_round(config, task, round_index, *rest, **kwargs)
        trained_in["start"] = now()
        trained = train_round(config, TimedTask(task, clock), round_index, *rest, **kwargs)
        trained_in["end"] = now()
        return trained

    results = []
    rounds = run_trajectory(config, task=task, round_runner=timed_round_runner)
    for result in rounds:
        if result.record.round == profiled_round:
            clock.add("bookkeeping", trained_in["end"], now())  # the record and pruning
            written = now()
            result.state.save(folder / "trajectory")
            result.state.save_checkpoint(folder / "checkpoint")
            clock.add("bookkeeping", written, now())
        results.append(_round_results(result.record, result.state))
    round_seconds = [end - start for start, end in zip(trained_in["start"], now())]
    timed = [sum(s[i] for p, s in clock.seconds.items() if p != "setup + rest") for i in (0, 1)]
    clock.seconds["setup + rest"] = [total - part for total, part in zip(round_seconds, timed)]
    return clock, round_seconds, results, task


def flops_per_image(config, task) -> float:
    """FLOPs of one training step's forward and backward, per image (what FlopCounterMode counts:
    convolutions and matmuls)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from ray_lth.models import build_model

    model = build_model(config.model, task.num_outputs).train()
    count = config.train.batch_size
    batch = (torch.stack([task.train_set[i][0] for i in range(count)]),
             torch.stack([torch.as_tensor(task.train_set[i][1]) for i in range(count)]))
    with FlopCounterMode(display=False) as counter:
        task.loss(model, batch, torch.device("cpu")).backward()
    return counter.get_total_flops() / count


def matmul_flops_per_second(size: int = 512, seconds: float = 1.0):
    """(per wall second, per CPU second) of a dense fp32 ``size``² matmul, after a warm-up."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    calls, started = 0, now()
    while time.perf_counter() - started[0] < seconds:
        a @ b
        calls += 1
    ended = now()
    flops = 2 * size ** 3 * calls
    return flops / (ended[0] - started[0]), flops / max(ended[1] - started[1], 1e-9)


def profile(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)  # as a trial's use_cpus
    config = quick_config(args)
    with tempfile.TemporaryDirectory(prefix="round_profile_") as folder:
        clock, round_seconds, results, task = run_profiled_trajectory(config, Path(folder), args.round)
    per_image = flops_per_image(config, task)
    matmul_wall, matmul_cpu = matmul_flops_per_second()
    compute = [clock.seconds["forward"][i] + clock.seconds["backward"][i] for i in (0, 1)]
    flops = per_image * clock.images
    return {"tree": str(args.tree), "round": args.round, "seed": args.seed, "pruning": args.pruning,
            "threads": torch.get_num_threads(), "torch": torch.__version__,
            "iterations": results[-1]["metrics"].get("iterations"), "images_trained": clock.images,
            "phases": {p: {"wall_s": s[0], "cpu_s": s[1]} for p, s in clock.seconds.items()},
            "round_seconds": {"wall_s": round_seconds[0], "cpu_s": round_seconds[1]},
            "flops_per_image": per_image,
            "forward_backward_flops_per_s": {"wall": flops / compute[0], "cpu": flops / compute[1]},
            "matmul_flops_per_s": {"wall": matmul_wall, "cpu": matmul_cpu},
            "flops_ratio_to_matmul": {"wall": flops / compute[0] / matmul_wall, "cpu": flops / compute[1] / matmul_cpu},
            "results": results}


def _summary(profiles: list) -> dict:
    """The best over repeated profiles of one checkout, each figure on its own: the least seconds
    per phase, the most FLOP/s. On a machine other processes load, the best run is the one they
    disturbed least; a median would still carry their share."""
    def least(get):
        return min(get(p) for p in profiles)

    rows = {phase: {clock: least(lambda p: p["phases"][phase][clock]) for clock in ("wall_s", "cpu_s")}
            for phase in PHASES}
    rows["round"] = {clock: least(lambda p: p["round_seconds"][clock]) for clock in ("wall_s", "cpu_s")}
    rates = {key: {clock: max(p[key][clock] for p in profiles) for clock in ("wall", "cpu")}
             for key in ("forward_backward_flops_per_s", "matmul_flops_per_s")}
    ratio = {clock: rates["forward_backward_flops_per_s"][clock] / rates["matmul_flops_per_s"][clock]
             for clock in ("wall", "cpu")}
    return {"seconds": rows, **rates, "flops_ratio_to_matmul": ratio}


def _table(summaries: dict) -> str:
    from ray_lth.cli import format_table

    names = list(summaries)
    header = ["phase"] + [f"{name} {clock}" for name in names for clock in ("wall s", "cpu s")]
    if len(names) == 2:
        header += ["wall ratio", "cpu ratio"]
    rows = []
    for phase in list(PHASES) + ["round"]:
        cells = [summaries[n]["seconds"][phase][c] for n in names for c in ("wall_s", "cpu_s")]
        if len(names) == 2:
            cells += [_ratio(cells[0], cells[2]), _ratio(cells[1], cells[3])]
        rows.append([phase] + [f"{v:.3f}" if isinstance(v, float) else v for v in cells])
    for key, label in (("forward_backward_flops_per_s", "fwd+bwd GFLOP/s"), ("matmul_flops_per_s", "matmul GFLOP/s"),
                       ("flops_ratio_to_matmul", "fwd+bwd / matmul")):
        scale = 1.0 if key == "flops_ratio_to_matmul" else 1e-9
        cells = [f"{scale * summaries[n][key][c]:.3f}" for n in names for c in ("wall", "cpu")]
        rows.append([label] + cells + (["", ""] if len(names) == 2 else []))
    return format_table(header, rows)


def _ratio(before: float, after: float) -> str:
    return f"{before / after:.2f}x" if after > 0 else "-"


def _child_profile(tree: Path, args) -> dict:
    """This profile run on checkout ``tree`` in a process of its own (its ray_lth imported)."""
    command = [sys.executable, str(Path(__file__).resolve()), "--tree", str(tree), "--child", "--weights", args.weights,
               "--round", str(args.round), "--threads", str(args.threads), "--seed", str(args.seed),
               "--pruning", args.pruning]
    done = subprocess.run(command, capture_output=True, text=True, env=_environment(tree))
    if done.returncode != 0:
        raise RuntimeError(f"the profile on {tree} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _environment(tree: Path) -> dict:
    import os

    return {**os.environ, "PYTHONPATH": str(tree)}


def _differences(before: list, after: list) -> list:
    """The rounds whose results differ between two checkouts (empty: identical)."""
    if len(before) != len(after):
        return [f"{len(before)} rounds before, {len(after)} after"]
    return [f"round {b['round']}: {b} != {a}" for b, a in zip(before, after) if b != a]


def compare(args) -> int:
    trees = {"before": Path(args.compare).resolve(), "after": args.tree}
    profiles = {name: [] for name in trees}
    for _ in range(args.repeats):  # alternated, so that drifting load hits both checkouts alike
        for name, tree in trees.items():
            profiles[name].append(_child_profile(tree, args))
    summaries = {name: _summary(p) for name, p in profiles.items()}
    differences = [d for before, after in zip(profiles["before"], profiles["after"])
                   for d in _differences(before["results"], after["results"])]
    print(_header(profiles["after"][0], args))
    print(f"before: {trees['before']}\nafter:  {trees['after']}")
    print(_table(summaries))
    print("results (every round's metrics, sparsity, masks, start digests): "
          + ("identical" if not differences else "DIFFERENT\n" + "\n".join(differences)))
    _write(args.out, {"before": profiles["before"], "after": profiles["after"], "summary": summaries,
                      "speedup_wall": summaries["before"]["seconds"]["round"]["wall_s"]
                      / summaries["after"]["seconds"]["round"]["wall_s"],
                      "speedup_cpu": summaries["before"]["seconds"]["round"]["cpu_s"]
                      / summaries["after"]["seconds"]["round"]["cpu_s"],
                      "results_identical": not differences})
    return 1 if differences else 0


def _header(profile_: dict, args) -> str:
    return (f"round {args.round} of the quick space (seed {args.seed}, {args.pruning} pruning), "
            f"{profile_['iterations']} iterations, {profile_['images_trained']} images, threads={profile_['threads']}, "
            f"torch {profile_['torch']}, {profile_['flops_per_image'] / 1e6:.2f} MFLOP per image (fwd+bwd), "
            f"repeats={args.repeats}")


def _write(out, payload: dict) -> None:
    if out:
        Path(out).write_text(json.dumps(payload, indent=1))
        print(f"wrote {out}")


def _embedded_weights(cache: str) -> str:
    from ray_lth.pretrain import embedded_weights
    from ray_lth.spaces import load_space

    return str(embedded_weights(load_space("quick").model, cache))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--round", type=int, default=1, help="the round profiled (the ones before it run un-timed)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pruning", default="global", choices=["global", "random"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads: a quick-space trial holds 1 CPU")
    parser.add_argument("--weights", help="θ_p file; default: the embedded θ_p, cached in --cache")
    parser.add_argument("--cache", default=".ray_lth_cache", help="where the embedded θ_p is cached")
    parser.add_argument("--compare", metavar="REF", help="a checkout to profile as 'before' against this one")
    parser.add_argument("--repeats", type=int, default=1, help="profiles per checkout with --compare (the best of them)")
    parser.add_argument("--out", help="write the profile(s) as JSON here")
    parser.add_argument("--tree", type=Path, default=ROOT, help=argparse.SUPPRESS)  # the checkout to import
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # print one profile's JSON only
    args = parser.parse_args(argv)
    # imported from the checkout profiled, chosen only now: each import of ray_lth is inside a function
    sys.path.insert(0, str(args.tree))
    args.weights = args.weights or _embedded_weights(args.cache)
    if args.child:
        print(json.dumps(profile(args)))
        return 0
    if args.compare:
        return compare(args)
    result = profile(args)
    print(_header(result, args))
    print(_table({"this checkout": _summary([result])}))
    _write(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
