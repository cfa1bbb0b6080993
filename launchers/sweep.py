"""Search lottery tickets with Ray Tune: one IMP trajectory per trial.

    python launchers/sweep.py                       # the embedded default space `quick`, local Ray
    python launchers/sweep.py --space paper_cifar --weights resnet50.pth --data-root ~/data
    python launchers/sweep.py --address auto --storage /shared/lth   # an existing Ray cluster
    python launchers/sweep.py --address auto --storage s3://bucket/lth   # its storage in an object store
    python launchers/sweep.py --name quick --resume                  # continue an interrupted sweep

Prints a line per finished round of every trial (sparsity %, metric %, verdict), a line per group
and round once every seed has reported it (seed-mean against the dense band), a compact status
table every 30 s and, at the end, per group the dense mean ± std and the maximum matching
sparsity, one sentence comparing the IMP tickets with the random masks, the wall time and the
core utilisation. Ray's own output (its table, INFO logs, checkpoint lines) only with --verbose.
Writes results.csv, summary.csv, timing.json, report/ and TensorBoard logs under <storage>/<name>/.
--storage takes what Ray Tune's storage_path takes: a path (relative ones resolved here) or an
object-store URI (s3://bucket/prefix, gs://..., s3://bucket?endpoint_override=host:port&scheme=http).

Before Ray starts, the files the configs name are read once on this machine (the driver) and
checked: --weights against the model, --data-root for the task's dataset files, mask_file and
rewind_file against the model and task; a bad one exits with status 2 and one message. On a
cluster (--address) the nodes must see the same paths as the driver (a shared filesystem); a
path the driver cannot see is an error, unless it is a URI (scheme://), left to the trials. A
trial that still meets such an error (a node seeing other files) fails once, not retried, and
the sweep ends with a line `trial <name> failed: <message>` per failed trial (exit status 1).
"""

import argparse
import dataclasses
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

LAUNCHED_AT = time.time()  # the wall time printed at the end includes Ray's start and θ_p's pre-training

os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the classic reporter API: our status table
# every trial's progress line as it is, without "[repeated 2x across cluster]" and Ray's note on it
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
# snapshot the experiment every 2 s (default 10 s), so a killed driver loses little on --resume
os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ray_lth.cli import parse_overrides  # noqa: E402
from ray_lth.experiment_layout import CACHE_DIR  # noqa: E402
from ray_lth.pretrain import embedded_weights  # noqa: E402
from ray_lth.preflight import check_files  # noqa: E402
from ray_lth.spaces import load_space, resolve_weights, space_names  # noqa: E402
from ray_lth.storage import is_uri, join_uri, location  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default="quick", help=f"a module of search_spaces/: {', '.join(space_names())}")
    parser.add_argument("--address", help="address of an existing Ray cluster (e.g. auto); default: start Ray here")
    parser.add_argument("--storage", default="experiments",
                        help="experiment root: a path or an object-store URI (s3://bucket/prefix, gs://...); "
                             "on a cluster, one every node sees")
    parser.add_argument("--name", help="experiment name (default: the space's name)")
    parser.add_argument("--resume", action="store_true", help="continue the experiment --name after an interruption")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a field of the space; a list value (seed=[0,1,2,3]) becomes a grid axis")
    parser.add_argument("--data-root", help="folder with the real datasets (never downloaded)")
    parser.add_argument("--weights", help="pre-trained weights file θ_p (torchvision, MoCo v2 or simCLR format)")
    parser.add_argument("--gpus-per-trial", type=float, help="GPUs per trial, fractions allowed (0.25: four share one)")
    parser.add_argument("--cpus-per-trial", type=float, help="CPUs per trial, fractions allowed")
    parser.add_argument("--workers-per-trial", type=int,
                        help="train each round over N Ray Train workers (DDP); batch_size stays the global batch")
    parser.add_argument("--gpus-per-worker", type=float, help="GPUs of each worker of a --workers-per-trial trial")
    parser.add_argument("--cpus-per-worker", type=float, help="CPUs of each worker of a --workers-per-trial trial")
    parser.add_argument("--patience", type=_patience, default=_UNSET,
                        help="pruned rounds in a row whose seed-mean may fail to match before the group's trajectories "
                             "stop, or 'none': every round runs (the authors' protocol)")
    parser.add_argument("--num-cpus", type=int, help="CPUs for a local Ray instance (default: all)")
    parser.add_argument("--verbose", action="store_true",
                        help="also show Ray's own output: its status table, INFO logs and warnings, checkpoint lines")
    return parser


def parse_args(argv=None):
    parser = build_parser()
    return parser, parser.parse_args(argv)


_UNSET = object()  # --patience not given (None is a value: "none", every round)


def _given(value) -> bool:
    return value is not None


def _patience(text: str):
    if text.strip().lower() == "none":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1 or 'none', got {text!r}") from None


def main(argv=None) -> int:
    parser, args = parse_args(argv)
    storage = args.storage if is_uri(args.storage) else str(Path(args.storage).resolve())  # a URI as given
    try:
        location(storage).exists()  # a malformed URI or an unreachable store: one message, before Ray starts
    except (ValueError, OSError) as error:
        parser.error(f"--storage: {error}")
    try:
        space = _prepared_space(args, storage)
    except ValueError as error:
        parser.error(str(error))

    import ray

    from ray_lth.tune.sweep import SweepError, run_sweep

    _init_ray(ray, args)
    try:
        outcome = run_sweep(space, storage, args.name or args.space, resume=args.resume,
                            verbose=2 if args.verbose else 1, launched_at=LAUNCHED_AT)
    except SweepError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        ray.shutdown()
    print(outcome.text())
    for error in outcome.errors:
        print(error, file=sys.stderr)  # "trial <name> failed: <message>"
    return 1 if outcome.errors else 0


# flags only some kinds of space take (their ``launcher_flags``), and how each shows it was given
_KIND_FLAGS = {"resume": lambda v: v, "patience": lambda v: v is not _UNSET, "workers_per_trial": _given,
               "gpus_per_worker": _given, "cpus_per_worker": _given}
# flags that set a field of the space itself (the rest go through --set as config fields)
_SPACE_FIELD_FLAGS = ("gpus_per_trial", "cpus_per_trial", "gpus_per_worker", "cpus_per_worker", "patience")


def _prepared_space(args, storage: str):
    """The space as the trials will run it: loaded, the flags applied and, unless resumed, every
    config and file checked and the driver's own work done (``space.prepare``), before Ray starts."""
    if args.resume and (args.set or args.weights or args.data_root):
        raise ValueError("--resume continues the sweep as it was started: drop --set, --weights and --data-root")
    space = load_space(args.space)
    refused = [name for name, given in _KIND_FLAGS.items()
               if given(getattr(args, name)) and name not in space.launcher_flags]
    if refused:
        flags = ", ".join("--" + name.replace("_", "-") for name in refused)
        raise ValueError(f"--space {args.space} is a {space.kind} space, which takes no {flags}")
    space = _with_flags(space, args)
    if args.resume:
        return space  # the runner takes the space the experiment was started with
    space = _resolve_weights(space, args.weights, storage)  # the embedded θ_p is pre-trained here once
    check_files(space.validate())  # every config; weights, data, masks, rewind states read here (preflight.py)
    return space.prepare(join_uri(storage, CACHE_DIR))  # where every node reads what it writes


def _with_flags(space, args):
    """The space with ``--set``, ``--data-root`` and the flags that set its own fields applied."""
    overrides = parse_overrides(args.set)
    if args.data_root:
        overrides["data_root"] = str(Path(args.data_root).resolve())
    if args.workers_per_trial is not None:
        overrides["workers_per_trial"] = args.workers_per_trial  # an ImpConfig field: checked with the batch size
    for key in ("mask_file", "rewind_file"):
        if isinstance(overrides.get(key), str) and not is_uri(overrides[key]):
            overrides[key] = str(Path(overrides[key]).resolve())  # trials run elsewhere
    space = space.with_overrides(overrides)
    values = {flag: value for flag in _SPACE_FIELD_FLAGS  # given (--patience none gives None)
              if (value := getattr(args, flag)) is not _UNSET and (value is not None or flag == "patience")}
    return dataclasses.replace(space, **values)


def _resolve_weights(space, weights, storage: str):
    """The space with its θ_p file. The embedded θ_p is pre-trained once per model and cached in
    ``<storage>/.ray_lth_cache/``. With an object store as storage the workers of every node read
    it from there (through the storage layer, as a URI), since the driver's local disk is not
    theirs: it is pre-trained in a local temporary folder and uploaded, unless the cache has it."""
    if not is_uri(storage):
        return resolve_weights(space, weights, Path(storage) / CACHE_DIR)
    if weights or space.weights != "embedded":
        return resolve_weights(space, weights, None)  # no cache needed
    remote = location(storage) / CACHE_DIR
    with tempfile.TemporaryDirectory(prefix="ray_lth_cache_") as tmp:
        cached = {name: (remote / name).read_bytes() for name in remote.list() if name.startswith(f"{space.model}-")}
        for name, data in cached.items():
            (Path(tmp) / name).write_bytes(data)
        local = embedded_weights(space.model, tmp)  # the cached copy if its sha256 holds, else pre-trained anew
        meta = Path(f"{local}.json")
        if cached.get(meta.name) != meta.read_bytes():  # pre-trained here: the file, then its sha256 record
            for path in (local, meta):
                (remote / path.name).write_bytes(path.read_bytes())
    return space.with_overrides({"weights": join_uri(storage, CACHE_DIR, local.name)})


def _init_ray(ray, args) -> None:
    if not args.verbose:
        from ray_lth.tune.console import quiet_ray_loggers

        quiet_ray_loggers()  # before ray.init: it warns about token authentication
    # no "Started a local Ray instance"; workers quiet from their start (Tune logs before the trainable runs)
    quiet = {} if args.verbose else {"logging_level": logging.WARNING, "runtime_env": {
        "worker_process_setup_hook": "ray_lth.tune.console.quiet_ray_worker"}}
    if args.address:
        ray.init(address=args.address, **quiet)
    else:
        # "local": a new instance here, never a cluster some earlier `ray start` left on this machine
        ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False, dashboard_host="127.0.0.1", **quiet)
    print(f"Ray: {ray.cluster_resources().get('CPU', 0):g} CPUs" + (f" at {args.address}" if args.address else ""),
          flush=True)


if __name__ == "__main__":
    sys.exit(main())
