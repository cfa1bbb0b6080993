import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ray_lth.pretrain import EMBEDDED_RECIPE, pretrain  # noqa: E402

# dummy credentials for the loopback S3 server, set before any Ray worker starts (workers inherit
# them); no instance-metadata lookups
for _key, _value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                     "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}.items():
    os.environ.setdefault(_key, _value)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)  # CI has 2 cores; keeps timing and results stable


@pytest.fixture(scope="session")
def resnet8_weights(tmp_path_factory):
    """A small θ_p: resnet8 pre-trained for one epoch on the procedural shapes set."""
    path = tmp_path_factory.mktemp("weights") / "resnet8-shapes.pt"
    pretrain("resnet8", path, {**EMBEDDED_RECIPE, "epochs": 1}, device="cpu")
    return path


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """One local Ray instance for the whole session (2 CPUs, no dashboard); launcher
    subprocesses join it with --address, so each test pays no Ray start-up."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, _temp_dir=str(tmp_path_factory.mktemp("ray")))
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="session")
def gpu_check_smoke(ray_cluster, tmp_path_factory):
    """One ``benchmarks/gpu_check.py --cpu-smoke`` run for the session, its files kept: (the
    process, its JSON report or None, the kept folder). Its paper_cifar part is CI's dry run, which
    tests/test_paper_dry_run.py checks there rather than running it a second time."""
    root = tmp_path_factory.mktemp("gpu_check")
    out, kept = root / "gpu_check.json", root / "files"
    done = subprocess.run([sys.executable, str(Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"),
                           "--cpu-smoke", "--address", ray_cluster, "--out", str(out), "--keep", str(kept)],
                          capture_output=True, text=True, timeout=900)
    return done, json.loads(out.read_text()) if out.is_file() else None, kept


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 endpoint on loopback (moto's standalone server), for the whole session. Yields a
    function: bucket name -> a storage URI ``s3://bucket?endpoint_override=127.0.0.1:PORT&scheme=http``
    (the bucket is created)."""
    pytest.importorskip("moto.server", reason="moto[server] (the test extra) is not installed")
    import pyarrow.fs as pafs

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"127.0.0.1:{port}"
    deadline = time.time() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.time() > deadline or server.poll() is not None:
                server.kill()
                pytest.fail(f"moto's S3 server did not start on {endpoint}")
            time.sleep(0.2)

    def bucket(name: str) -> str:
        pafs.S3FileSystem(endpoint_override=endpoint, scheme="http", allow_bucket_creation=True).create_dir(name)
        return f"s3://{name}?endpoint_override={endpoint}&scheme=http"

    yield bucket
    server.kill()
    server.wait()
