"""The overhead of object storage: one small sweep with --storage on local disk and the same
sweep with --storage on S3 (moto's server on loopback: the cost of the S3 protocol, PUT per
write, Ray's syncing, with no network in the way), on one Ray instance; wall times and ratio.

    python benchmarks/storage_overhead.py [--seeds 2] [--rounds 3] [--epochs 2] [--num-cpus 2]

Needs moto[server] (the test extra). θ_p is pre-trained once beforehand (resnet8 on shapes) and
given as --weights: a local path for the local sweep, an object in the bucket for the S3 one.
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

for _key, _value in {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
                     "AWS_EC2_METADATA_DISABLED": "true"}.items():
    os.environ.setdefault(_key, _value)  # before Ray starts: its workers inherit them


def _s3_server():
    """A moto server on a free loopback port; returns (process, endpoint)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(150):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server, f"127.0.0.1:{port}"
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("moto's S3 server did not start")


def _sweep(address: str, storage: str, weights: str, args) -> float:
    command = [sys.executable, str(ROOT / "launchers" / "sweep.py"), "--address", address, "--storage", storage,
               "--name", "bench", "--weights", weights, "--set", "model=resnet8", "--set", "task=digits",
               "--set", "pruning=global", "--set", f"seed={list(range(args.seeds))}", "--set", f"rounds={args.rounds}",
               "--set", f"epochs={args.epochs}", "--patience", "100"]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--num-cpus", type=int, default=2)
    args = parser.parse_args()

    import pyarrow.fs as pafs
    import ray

    from ray_lth.pretrain import embedded_weights
    from ray_lth.experiment_layout import TIMING_FILE
    from ray_lth.storage import join_uri, location

    server, endpoint = _s3_server()
    work = tempfile.mkdtemp(prefix="ray_lth_storage_bench_")
    try:
        weights = embedded_weights("resnet8", Path(work) / "cache", device="cpu")
        pafs.S3FileSystem(endpoint_override=endpoint, scheme="http", allow_bucket_creation=True).create_dir("bench")
        s3 = f"s3://bench?endpoint_override={endpoint}&scheme=http"
        (location(s3) / "resnet8.pt").write_bytes(weights.read_bytes())
        ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False, _temp_dir=str(Path(work) / "ray"))
        address = ray.get_runtime_context().gcs_address
        local_wall = _sweep(address, str(Path(work) / "local"), str(weights), args)
        s3_wall = _sweep(address, s3, join_uri(s3, "resnet8.pt"), args)
        local_tuning = json.loads((location(Path(work) / "local") / "bench" / TIMING_FILE).read_text())
        s3_tuning = json.loads((location(s3) / "bench" / TIMING_FILE).read_text())
        print(f"sweep: resnet8 on digits, {args.seeds} seeds x rounds 0..{args.rounds}, {args.epochs} epochs per round, "
              f"{args.num_cpus} CPUs, one Ray instance for both")
        print(f"{'':<36}{'local disk':>12}{'S3 (loopback)':>15}{'ratio':>8}")
        print(f"{'launcher wall time (s)':<36}{local_wall:12.1f}{s3_wall:15.1f}{s3_wall / local_wall:8.2f}")
        print(f"{'tuning wall time (s, tuner.fit)':<36}{local_tuning['tuning_wall_s']:12.1f}"
              f"{s3_tuning['tuning_wall_s']:15.1f}{s3_tuning['tuning_wall_s'] / local_tuning['tuning_wall_s']:8.2f}")
        print(f"{'rounds reported':<36}{local_tuning['rounds']:12d}{s3_tuning['rounds']:15d}")
    finally:
        if ray.is_initialized():
            ray.shutdown()
        server.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
