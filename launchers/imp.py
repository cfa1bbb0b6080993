"""Run one IMP trajectory without Ray and print a table per round.

Useful to debug a configuration before a sweep. With no --weights, the embedded default first
pre-trains a small model on the procedural shapes set (cached) and uses it as θ_p.

    python launchers/imp.py                                  # embedded default
    python launchers/imp.py --set rounds=3 --set epochs=2    # shorter
    python launchers/imp.py --set model=resnet50 --set task=cifar10 --set schedule=cifar10 \
        --weights resnet50.pth --data-root ~/data
Re-running with the same --out resumes after the last finished round. --out holds the round masks
and trajectory.json, which names the rewind state (θ_p by its SHA-256, θ_0 by the seed): θ_p is
never copied there, and a θ_p file changed since the run started is refused on resume. Only θ_k%
(rewind=early) is saved, once, as rewind_state.pt.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ray_lth.cli import format_table, parse_overrides  # noqa: E402
from ray_lth.config import ImpConfig  # noqa: E402
from ray_lth.imp import run_trajectory  # noqa: E402
from ray_lth.experiment_layout import CACHE_DIR, RUN_CONFIG_FILE, STATE_FILE  # noqa: E402
from ray_lth.trajectory_state import TrajectoryState  # noqa: E402
from ray_lth.pretrain import embedded_weights  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", help="θ_p file (torchvision, MoCo v2 or simCLR format); default: embedded pre-training")
    parser.add_argument("--data-root", help="folder holding the real datasets (never downloaded)")
    parser.add_argument("--out", default="experiments/imp-default", help="where round masks and state go (resumes)")
    parser.add_argument("--cache", default=CACHE_DIR, help="where the embedded θ_p is cached")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override an ImpConfig or training field, e.g. rounds=5, lr=0.1, rewind=early")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)

    values = parse_overrides(args.set)
    if args.data_root:
        values["data_root"] = args.data_root
    rewind = values.get("rewind", "pretrained")
    if args.weights:
        values["weights"] = args.weights
    elif rewind != "init":
        values["weights"] = str(embedded_weights(values.get("model", "resnet20"), args.cache))
    try:
        config = ImpConfig.from_dict(values)
    except ValueError as error:
        parser.error(str(error))

    out = Path(args.out)
    state = TrajectoryState.load(out) if (out / STATE_FILE).exists() else None
    config_path = out / RUN_CONFIG_FILE
    wanted = {k: v for k, v in config.to_dict().items() if k != "rounds"}
    if state and json.loads(config_path.read_text()) != json.loads(json.dumps(wanted)):
        parser.error(f"{out} holds a trajectory with another config ({config_path}); pick another --out")
    out.mkdir(parents=True, exist_ok=True)
    config_path.write_text(json.dumps(wanted, indent=1))
    rows = [_row(r, config) for r in state.records] if state else []
    if state:
        print(f"resuming {out} at round {state.next_round}")
    header = ["round", "sparsity %", "nominal %", "metric", "train_loss", "epochs", "seconds"]
    for result in run_trajectory(config, state):
        result.state.save(out)
        rows.append(_row(result.record, config))
        print("  ".join(f"{h}={v}" for h, v in zip(header, format_table(header, rows[-1:]).splitlines()[2].split())),
              flush=True)
    print("\n" + format_table(header, rows))
    print(f"\nround masks and state: {out}")
    return 0


def _row(record, config: ImpConfig):
    nominal = 100 * config.sparsity_after(record.round)
    return [record.round, f"{100 * record.sparsity:.2f}", f"{nominal:.2f}", record.metric,
            record.metrics.get("train_loss", float("nan")), record.epochs, f"{record.seconds:.1f}"]


if __name__ == "__main__":
    sys.exit(main())
