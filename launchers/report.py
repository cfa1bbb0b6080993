"""The report of a finished (or interrupted) experiment, from its folder alone: nothing reruns.

    python launchers/report.py experiments/quick
    python launchers/report.py experiments/depth-resnet152 --compare experiments/depth-resnet50
    python launchers/report.py "s3://bucket/lth/quick"    # an experiment in an object store

Writes <experiment>/report/: accuracy-vs-sparsity curves (mean ± std over seeds, the dense
mean ± std band, the matching boundary starred; over the number of remaining weights when several
models meet), the tables of maximum matching and universal sparsity (CSV and README.md), the
relative mask similarity, completely pruned kernels and kernel heatmaps (PNG). The sweep writes
the same report at its end. An experiment in an object store (any URI --storage takes) is read
from there and its report/ written back there.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ray_lth.analysis.report import write_report  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", help="an experiment folder or storage URI (holding results.csv)")
    parser.add_argument("--compare", nargs="+", default=[], metavar="EXPERIMENT",
                        help="other experiments (folders or URIs) whose curves join the figures (e.g. another model)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        readme = write_report(args.experiment, args.compare)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"report: {readme}")
    for name in readme.parent.list():
        if name != readme.name:
            print(f"  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
