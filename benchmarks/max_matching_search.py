"""Exhaustive evaluation vs the automatic search for the maximum matching sparsity, in one run,
on the embedded transfer setting (no Ray: the IMP core directly).

    python benchmarks/max_matching_search.py [--levels 10] [--seeds 3] [--task camo_shapes] [--probe-orders 3]

1. IMP on the pre-training task (shapes, from the embedded θ_p), one trajectory, gives the masks
   m_P of rounds 1..levels (shared by both methods, not counted).
2. Dense fine-tunes on the downstream task, one per seed (the band; needed by both, counted in both).
3. Exhaustive: fine-tune every level's mask with every seed; the answer is the sparsest level
   whose seed-mean matches.
4. Automatic: BoundarySearch (bisection with one seed, all seeds at the boundary and its
   neighbour, one look-ahead probe); its fine-tunes are run for real, not looked up.
Prints both answers (they must agree), the epochs each spent and their ratio (goal <= 0.40).

``--probe-orders N`` repeats step 4 with each of the first N seeds as the bisection's probe seed.
Only the first search runs its fine-tunes; the others replay them from the exhaustive table, which
is exact because a fine-tune is a function of (mask, seed) alone; the first search checks it.
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
from ray_lth.matching import dense_band  # noqa: E402
from ray_lth.pretrain import embedded_weights  # noqa: E402
from ray_lth.spaces import load_space  # noqa: E402
from ray_lth.tasks import build_task  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--levels", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=3)
    default = load_space("quick").fixed  # the embedded default's task, model and epochs per round
    parser.add_argument("--task", default=default["task"], help="downstream task")
    parser.add_argument("--model", default=default["model"])
    parser.add_argument("--epochs", type=int, default=default["epochs"])
    parser.add_argument("--lr", type=float, help="fine-tuning lr (default: the embedded schedule's)")
    parser.add_argument("--probe-orders", type=int, default=1, help="searches, each probing with another seed first")
    parser.add_argument("--probe-seeds", type=int, default=1, help="seeds per bisection probe")
    parser.add_argument("--save-table", help="write the exhaustive (level, seed) -> metric table as JSON")
    args = parser.parse_args()
    torch.set_num_threads(1)  # as a trial on one CPU
    work = Path(tempfile.mkdtemp(prefix="rlth-bench-"))
    weights = str(embedded_weights(args.model, work / "cache"))
    base = dict(model=args.model, weights=weights, rewind="pretrained", device="cpu")

    started = time.perf_counter()
    upstream = ImpConfig.from_dict({**base, "task": "shapes", "rounds": args.levels - 1, "epochs": 2})
    for result in run_trajectory(upstream):
        result.state.save(work / "upstream")  # after round k-1, mask_round_k exists
    masks = [work / "upstream" / MASK_FILE.format(k) for k in range(1, args.levels + 1)]
    task = build_task(args.task)
    seeds = list(range(args.seeds))

    def fine_tune(mask_file, seed) -> float:
        config = ImpConfig.from_dict({**base, "task": args.task, "rounds": 0, "epochs": args.epochs, "seed": seed,
                                      **({"lr": args.lr} if args.lr else {}),
                                      **({"mask_file": str(mask_file)} if mask_file else {})})
        return next(iter(run_trajectory(config, task=task))).record.metric

    band = dense_band([fine_tune(None, s) for s in seeds])
    dense_epochs = args.epochs * len(seeds)

    t0 = time.perf_counter()
    table = {(lv, s): fine_tune(masks[lv], s) for lv in range(args.levels) for s in seeds}
    exhaustive_seconds = time.perf_counter() - t0
    exhaustive = exhaustive_max_matching(table, args.levels, seeds, band)

    if args.save_table:
        Path(args.save_table).write_text(json.dumps({"dense": [band.mean, band.std, band.seeds],
                                                     "table": [[lv, s, m] for (lv, s), m in table.items()]}))

    def pct(level):
        return "none" if level is None else f"{100 * (1 - 0.8 ** (level + 1)):.2f}"

    exhaustive_epochs = dense_epochs + args.epochs * len(table)
    print(f"task={args.task} model={args.model} levels={args.levels} (20.00..{pct(args.levels - 1)} %) "
          f"seeds={args.seeds} epochs/fine-tune={args.epochs} dense={100 * band.mean:.2f}±{100 * band.std:.2f} %")
    print("exhaustive seed-means by level: " + ", ".join(
        f"{pct(lv)} % {100 * sum(table[(lv, s)] for s in seeds) / len(seeds):.2f}" for lv in range(args.levels)))
    rows = [["exhaustive", "-", pct(exhaustive), len(table) + len(seeds), exhaustive_epochs, "",
             f"{exhaustive_seconds:.1f}"]]
    for order in range(args.probe_orders):
        probe_first = seeds[order:] + seeds[:order]  # the bisection probes with probe_first[0]
        t0 = time.perf_counter()
        search = BoundarySearch(args.levels, probe_first, band, probe_seeds=args.probe_seeds)
        while requests := search.requests():
            for level, seed in requests:
                if order == 0:  # for real, and it must reproduce the exhaustive table exactly
                    metric = fine_tune(masks[level], seed)
                    if metric != table[(level, seed)]:
                        raise SystemExit(f"fine-tune ({level}, {seed}) is not reproducible: "
                                         f"{metric} vs {table[(level, seed)]}")
                else:
                    metric = table[(level, seed)]
                search.tell(level, seed, metric)
        answer = search.answer()
        automatic_epochs = dense_epochs + args.epochs * answer.evaluations
        rows.append([f"automatic ({'run' if order == 0 else 'replayed'})", probe_first[0], pct(answer.level),
                     answer.evaluations + len(seeds), automatic_epochs,
                     f"{automatic_epochs / exhaustive_epochs:.3f}", f"{time.perf_counter() - t0:.1f}"])
        print(f"probe seed {probe_first[0]}: answers equal: {exhaustive == answer.level}; epoch ratio "
              f"{automatic_epochs / exhaustive_epochs:.3f}; seeds at boundary {answer.seeds_at_boundary}, at its "
              f"neighbour {answer.seeds_at_neighbour}; uncertain: {answer.uncertain} ({answer.reason})")
    print(format_table(["method", "probe seed", "max matching sparsity %", "fine-tunes", "epochs",
                        "ratio to exhaustive", "seconds"], rows))
    print(f"total wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
