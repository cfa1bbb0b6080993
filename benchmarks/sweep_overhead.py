"""Ray bookkeeping per round (mask checkpoint + tune.report) as a fraction of the round's
training time, and the wall time of the default sweep, measured on one run of a space.

    python benchmarks/sweep_overhead.py [--space quick] [--storage /tmp/ray_lth_bench]

The trial measures, round by round, the time spent saving the trajectory state, writing the
checkpoint and calling tune.report (``bookkeeping_seconds``) and the time spent training and
evaluating (``round_seconds``); both land in results.csv. Goal: bookkeeping <= 2 % of training.
"""

import argparse
import csv
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--space", default="quick")
    parser.add_argument("--storage", default="/tmp/ray_lth_bench")
    parser.add_argument("--num-cpus", type=int, default=2)
    args = parser.parse_args()
    storage = Path(args.storage)
    shutil.rmtree(storage / args.space, ignore_errors=True)
    started = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "launchers" / "sweep.py"), "--space", args.space, "--storage",
                    str(storage), "--num-cpus", str(args.num_cpus)], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    with open(storage / args.space / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    training = sum(float(r["round_seconds"]) for r in rows)
    bookkeeping = sum(float(r["bookkeeping_seconds"]) for r in rows)
    print(f"space={args.space} cpus={args.num_cpus} trials={len({r['trial_id'] for r in rows})} rounds={len(rows)}")
    print(f"{'wall time of the sweep (s, incl. Ray start and embedded pre-training)':<72}{wall:10.1f}")
    print(f"{'training + evaluation, all rounds (s)':<72}{training:10.1f}")
    print(f"{'bookkeeping: state save + checkpoint + tune.report, all rounds (s)':<72}{bookkeeping:10.2f}")
    print(f"{'bookkeeping / training':<72}{bookkeeping / training:10.2%}")


if __name__ == "__main__":
    main()
