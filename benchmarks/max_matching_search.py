"""Exhaustive evaluation vs the automatic search for the maximum matching sparsity, in one run,
on the embedded transfer setting (no Ray: the IMP core directly).

    python benchmarks/max_matching_search.py [--levels 10] [--seeds 3] [--task camo_shapes] [--probe-orders 3]
    python benchmarks/max_matching_search.py --table saved.json [--probe-orders 3]

1. IMP on the pre-training task (shapes, from the embedded θ_p), one trajectory, gives the masks
   m_P of rounds 1..levels (shared by both methods, not counted).
2. Dense fine-tunes on the downstream task, one per seed (the band; needed by both, counted in both).
3. Exhaustive: fine-tune every level's mask with every seed; the answer is the sparsest level
   whose seed-mean matches.
4. Automatic: BoundarySearch (bisection with one probe seed a level, seed k mod n at level k, the
   pair it ends at confirmed on the
   seed-mean, one look-ahead probe; a seed-mean decided early where the [0, 1] range of the metric
   leaves the missing seeds no way to change it); its fine-tunes are run for real, not looked up.
Prints both answers (they must agree), the epochs each spent and their ratio (goal <= 0.40), and
where the boundary fell: the answer's level out of the levels, "easy" where it is the first or
the last level (or none matches), the cases a bisection meets at its cheapest.

``--probe-orders N`` repeats step 4 with the seed order rotated N times (order r: seed r probes level 0,
seed r+1 level 1, ...).
Only the first search runs its fine-tunes; the others replay them from the exhaustive table, which
is exact because a fine-tune is a function of (mask, seed) alone; the first search checks it.
``--save-table`` writes the exhaustive table and its setting; ``--table`` replays every search
from such a file, with no fine-tune run (the setting's epochs per fine-tune are in the file).
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ray_lth.boundary import BoundarySearch, exhaustive_max_matching  # noqa: E402
from ray_lth.cli import format_table  # noqa: E402
from ray_lth.config import ImpConfig  # noqa: E402
from ray_lth.imp import run_trajectory  # noqa: E402
from ray_lth.experiment_layout import MASK_FILE  # noqa: E402
from ray_lth.matching import DenseBand, dense_band  # noqa: E402
from ray_lth.pretrain import embedded_weights  # noqa: E402
from ray_lth.spaces import load_space  # noqa: E402
from ray_lth.tasks import build_task  # noqa: E402

METRIC_BOUNDS = (0.0, 1.0)  # every metric the embedded tasks report (top-1, AP, mIoU) is a fraction


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--levels", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=3)
    default = load_space("quick").fixed  # the embedded default's task, model and epochs per round
    parser.add_argument("--task", default=default["task"], help="downstream task")
    parser.add_argument("--model", default=default["model"])
    parser.add_argument("--epochs", type=int, default=default["epochs"])
    parser.add_argument("--lr", type=float, help="fine-tuning lr (default: the embedded schedule's)")
    parser.add_argument("--probe-orders", type=int, default=1, help="searches, each with the seed order rotated once more")
    parser.add_argument("--probe-seeds", type=int, default=1, help="seeds per bisection probe")
    parser.add_argument("--save-table", help="write the exhaustive (level, seed) -> metric table as JSON")
    parser.add_argument("--table", help="replay every search from a table --save-table wrote (no fine-tune runs)")
    return parser.parse_args()


class Measured:
    """The upstream masks, the dense band and the exhaustive table of one setting, measured for real."""

    def __init__(self, args: argparse.Namespace):
        torch.set_num_threads(1)  # as a trial on one CPU
        self.args = args
        work = Path(tempfile.mkdtemp(prefix="rlth-bench-"))
        weights = str(embedded_weights(args.model, work / "cache"))
        self.base = dict(model=args.model, weights=weights, rewind="pretrained", device="cpu")
        upstream = ImpConfig.from_dict({**self.base, "task": "shapes", "rounds": args.levels - 1, "epochs": 2})
        for result in run_trajectory(upstream):
            result.state.save(work / "upstream")  # after round k-1, mask_round_k exists
        self.masks = [work / "upstream" / MASK_FILE.format(k) for k in range(1, args.levels + 1)]
        self.task = build_task(args.task)
        self.seeds = list(range(args.seeds))
        self.band = dense_band([self.fine_tune(None, s) for s in self.seeds])
        started = time.perf_counter()
        self.table = {(lv, s): self.fine_tune(lv, s) for lv in range(args.levels) for s in self.seeds}
        self.exhaustive_seconds = time.perf_counter() - started

    def fine_tune(self, level: int, seed: int) -> float:
        mask = {} if level is None else {"mask_file": str(self.masks[level])}
        config = ImpConfig.from_dict({**self.base, "task": self.args.task, "rounds": 0, "epochs": self.args.epochs,
                                      "seed": seed, **({"lr": self.args.lr} if self.args.lr else {}), **mask})
        return next(iter(run_trajectory(config, task=self.task))).record.metric

    def setting(self) -> dict:
        return {key: getattr(self.args, key) for key in ("task", "model", "epochs", "lr", "levels", "seeds")}

    def save(self, path: str) -> None:
        Path(path).write_text(json.dumps({"setting": self.setting(),
                                          "dense": [self.band.mean, self.band.std, self.band.seeds],
                                          "table": [[lv, s, m] for (lv, s), m in self.table.items()]}))


def load_table(path: str):
    """(setting, band, table) from a file --save-table wrote."""
    saved = json.loads(Path(path).read_text())
    table = {(int(lv), int(s)): float(m) for lv, s, m in saved["table"]}
    return saved["setting"], DenseBand(*saved["dense"]), table


def pct(level):
    return "none" if level is None else f"{100 * (1 - 0.8 ** (level + 1)):.2f}"


def boundary_position(level, levels: int) -> str:
    """Where the answer lies among the levels; "easy" at either end, where bisection is cheapest."""
    if level is None:
        return f"none of {levels} levels matches (easy)"
    easy = " (easy: the first level)" if level == 0 else " (easy: the last level)" if level == levels - 1 else ""
    return f"level {level + 1} of {levels}{easy}"


def search(levels: int, probe_first, band, probe_seeds: int, evaluate):
    """One automatic search driven to its answer; ``evaluate(level, seed)`` gives a metric."""
    boundary = BoundarySearch(levels, probe_first, band, probe_seeds=probe_seeds, metric_bounds=METRIC_BOUNDS)
    while requests := boundary.requests():
        for level, seed in requests:
            boundary.tell(level, seed, evaluate(level, seed))
    return boundary.answer()


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    measured = None
    if args.table:
        setting, band, table = load_table(args.table)
        exhaustive_seconds = None
    else:
        measured = Measured(args)
        setting, band, table = measured.setting(), measured.band, measured.table
        exhaustive_seconds = measured.exhaustive_seconds
        if args.save_table:
            measured.save(args.save_table)
    levels, seeds, epochs = setting["levels"], list(range(setting["seeds"])), setting["epochs"]
    exhaustive = exhaustive_max_matching(table, levels, seeds, band)
    dense_epochs = epochs * len(seeds)
    exhaustive_epochs = dense_epochs + epochs * len(table)
    print(f"task={setting['task']} model={setting['model']} levels={levels} (20.00..{pct(levels - 1)} %) "
          f"seeds={len(seeds)} epochs/fine-tune={epochs} dense={100 * band.mean:.2f}±{100 * band.std:.2f} %"
          + (f" (replayed from {args.table})" if args.table else ""))
    print("exhaustive seed-means by level: " + ", ".join(
        f"{pct(lv)} % {100 * sum(table[(lv, s)] for s in seeds) / len(seeds):.2f}" for lv in range(levels)))
    verdicts = [sum(table[(lv, s)] for s in seeds) / len(seeds) >= band.threshold for lv in range(levels)]
    first_failing = next((lv for lv, ok in enumerate(verdicts) if not ok), None)
    bent = first_failing is not None and any(verdicts[first_failing:])  # a seed-mean recovers past a failure
    print(f"boundary: {boundary_position(exhaustive, levels)}" + (
        f"; the seed-mean is not monotone: level {first_failing + 1} fails first, so a search that assumes "
        f"monotonicity can stop before the answer" if bent else ""))
    rows = [["exhaustive", "-", pct(exhaustive), boundary_position(exhaustive, levels), len(table) + len(seeds),
             exhaustive_epochs, "", "-" if exhaustive_seconds is None else f"{exhaustive_seconds:.1f}"]]
    for order in range(args.probe_orders):
        probe_first = seeds[order:] + seeds[:order]  # level k is probed by probe_first[k mod n]
        for_real = measured is not None and order == 0
        t0 = time.perf_counter()
        answer = search(levels, probe_first, band, args.probe_seeds,
                        lambda lv, s: reproduced(measured, table, lv, s) if for_real else table[(lv, s)])
        automatic_epochs = dense_epochs + epochs * answer.evaluations
        ratio = automatic_epochs / exhaustive_epochs
        rows.append([f"automatic ({'run' if for_real else 'replayed'})", order, pct(answer.level),
                     boundary_position(answer.level, levels), answer.evaluations + len(seeds), automatic_epochs,
                     f"{ratio:.3f}", f"{time.perf_counter() - t0:.1f}"])
        print(f"probe order {order}: answers equal: {exhaustive == answer.level}; epoch ratio {ratio:.3f}; "
              f"seeds at boundary {answer.seeds_at_boundary}, at its neighbour {answer.seeds_at_neighbour}; "
              f"uncertain: {answer.uncertain} ({answer.reason})")
    print(format_table(["method", "probe order", "max matching sparsity %", "boundary", "fine-tunes", "epochs",
                        "ratio to exhaustive", "seconds"], rows))
    print(f"total wall time {time.perf_counter() - started:.0f} s")


def reproduced(measured: Measured, table, level: int, seed: int) -> float:
    """A fine-tune run for real, which must reproduce the exhaustive table's entry exactly."""
    metric = measured.fine_tune(level, seed)
    if metric != table[(level, seed)]:
        raise SystemExit(f"fine-tune ({level}, {seed}) is not reproducible: {metric} vs {table[(level, seed)]}")
    return metric


if __name__ == "__main__":
    main()
