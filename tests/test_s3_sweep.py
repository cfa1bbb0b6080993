"""The sweep with its storage on a real S3 endpoint (moto's server on loopback, ``s3_server``):
every file in the bucket and none on local disk, resume after a killed driver or worker, two
nodes sharing the bucket, the report written back there. Each sweep is tiny (resnet8, digits)."""

import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from ray_lth.masks import load_mask
from ray_lth.storage import join_uri, location
from ray_lth.tune.sweep import SweepError, run_sweep
from multinode_sweep import REPORT_MARKER
from test_sweep import ROOT, _launch, _launch_command, _space


def _rows(experiment):
    return list(csv.DictReader(io.StringIO((experiment / "results.csv").read_text(), newline="")))


def _results(experiment):
    """Every result line of every trial's result.json (Ray syncs them to the bucket every ~2 s)."""
    results = []
    for trial in experiment.list():
        if (experiment / trial / "result.json").exists():
            for line in (experiment / trial / "result.json").read_text().splitlines():
                try:
                    results.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    return results


def _wait_for_round(experiment, round_index, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        reached = [r for r in _results(experiment) if r.get("round", -1) >= round_index]
        if reached:
            return reached[0]
        time.sleep(0.5)
    raise TimeoutError(f"no trial of {experiment} reached round {round_index}")


def _folders_named(names, roots):
    """Folders under ``roots`` named one of ``names``: where a path made of a URI would land."""
    return [os.path.join(folder, d) for root in roots for folder, dirs, _ in os.walk(root) for d in dirs if d in names]


def _ray_session_dir():
    import ray

    return ray._private.worker._global_node.get_session_dir_path()


def test_weights_from_a_uri_load_weights_only_with_the_local_messages(s3_server, resnet8_weights, tmp_path):
    import torch

    from ray_lth.models import build_model, get_model_spec
    from ray_lth.weights import WeightsError, file_sha256, load_pretrained

    storage = s3_server("lth-weights")
    (location(storage) / "resnet8.pt").write_bytes(resnet8_weights.read_bytes())
    model, spec = build_model("resnet8", 10), get_model_spec("resnet8")
    assert load_pretrained(model, join_uri(storage, "resnet8.pt"), spec.heads) == "torchvision"
    assert torch.equal(model.conv1.weight, torch.load(resnet8_weights, weights_only=True)["conv1.weight"])
    assert file_sha256(join_uri(storage, "resnet8.pt")) == file_sha256(resnet8_weights)
    with pytest.raises(WeightsError, match=r"^weights file s3://lth-weights/none.pt does not exist$"):
        load_pretrained(model, join_uri(storage, "none.pt"), spec.heads)  # named without the URI's options
    torch.save(model, tmp_path / "whole_model.pt")  # a pickled module, not a state dict: never unpickled
    (location(storage) / "whole_model.pt").write_bytes((tmp_path / "whole_model.pt").read_bytes())
    with pytest.raises(WeightsError, match="s3://lth-weights/whole_model.pt: holds pickled objects") as error:
        load_pretrained(model, join_uri(storage, "whole_model.pt"), spec.heads)
    assert "weights_only=False" not in str(error.value)


def _small(*args):
    return ("--set", "rounds=1", "--set", "epochs=1", *args)


def test_s3_sweep_writes_every_file_to_the_bucket_and_none_locally(ray_cluster, s3_server, resnet8_weights, tmp_path):
    storage = s3_server("lth-files")
    bucket = location(storage)
    (bucket / "weights" / "resnet8.pt").write_bytes(resnet8_weights.read_bytes())
    weights = join_uri(storage, "weights", "resnet8.pt")  # θ_p read by the driver and every worker from S3
    run = subprocess.run(_launch_command(ray_cluster, storage, *_small("--set", "seed=[0]", "--weights", weights,
                                                                      "--name", "files")),
                         cwd=tmp_path, capture_output=True, text=True, timeout=400)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "results: s3://lth-files/files/results.csv" in run.stdout
    experiment = bucket / "files"
    rows = _rows(experiment)
    assert sorted(int(r["round"]) for r in rows) == [0, 1]
    (summary,) = list(csv.DictReader(io.StringIO((experiment / "summary.csv").read_text())))
    assert summary["seeds"] == "1" and summary["rounds_run"] == "2"
    assert json.loads((experiment / "timing.json").read_text())["rounds"] == 2
    assert json.loads((experiment / "ray_lth_space.json").read_text())["kind"] == "grid"
    with pytest.raises(SweepError, match="s3://lth-files/files exists: pass --resume"):  # tuner.pkl seen in S3
        run_sweep(_space(resnet8_weights), storage, "files", verbose=0)
    (trial,) = {r["trial_name"] for r in rows}
    assert {"mask_round_00.rlthmask", "mask_round_01.rlthmask"} <= set((experiment / trial / "trajectory").list())
    assert len([c for c in (experiment / trial).list() if c.startswith("checkpoint_")]) == 2  # rounds 0 and 1
    # TensorBoard: the staged event files were uploaded with every round, the last one included
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with (experiment / "tensorboard" / trial).as_local_dir() as events:
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        assert [e.step for e in accumulator.Scalars("metric/by_round")] == [0, 1]
    report = experiment / "report"
    pngs = [name for name in report.list() if name.endswith(".png")]
    assert "README.md" in report.list() and "curves_digits.png" in pngs
    assert all(f"]({p})" in (report / "README.md").read_text() for p in pngs)
    # nothing went to a local folder named after the URI: not where the driver ran, not in Ray's
    # folders (the workers' trial dirs), not in the checkout
    assert list(tmp_path.iterdir()) == []
    assert _folders_named({"s3:", "lth-files"}, [tmp_path, _ray_session_dir(), ROOT]) == []

    # the report launcher reads the experiment from its URI and writes report/ back there
    report.delete()
    again = subprocess.run([sys.executable, str(ROOT / "launchers" / "report.py"), join_uri(storage, "files")],
                           cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "report: s3://lth-files/files/report/README.md" in again.stdout
    assert (report / "README.md").read_text().startswith("# Report: files")
    assert sorted(name for name in report.list() if name.endswith(".png")) == sorted(pngs)
    from PIL import Image

    with Image.open(io.BytesIO((report / "curves_digits.png").read_bytes())) as image:
        assert image.format == "PNG" and min(image.size) > 100
    assert list(tmp_path.iterdir()) == []


def test_a_killed_driver_resumes_from_s3_with_the_same_rows_as_an_uninterrupted_run(ray_cluster, s3_server,
                                                                                     resnet8_weights, tmp_path):
    storage = s3_server("lth-killd")
    # the session's θ_p (a local file): the embedded one's pre-training and its cache in the bucket
    # are the killed-worker test's
    launcher = _launch(ray_cluster, storage, "--set", "seed=[0, 1]", "--set", "rounds=3", "--set", "epochs=3",
                       "--weights", str(resnet8_weights), "--name", "killd", cwd=tmp_path)
    experiment = location(storage) / "killd"
    _wait_for_round(experiment, 1)
    os.killpg(launcher.pid, signal.SIGKILL)
    launcher.communicate(timeout=60)
    resumed = subprocess.run([sys.executable, str(ROOT / "launchers" / "sweep.py"), "--address", ray_cluster,
                              "--storage", storage, "--name", "killd", "--resume"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    rows = _rows(experiment)
    keys = [(r["trial_name"].rsplit("-", 1)[-1], int(r["round"])) for r in rows]
    assert sorted(keys) == sorted((f"seed{s}", k) for s in (0, 1) for k in range(4)), resumed.stdout[-3000:]
    summary = list(csv.DictReader(io.StringIO((experiment / "summary.csv").read_text())))
    assert summary[0]["seeds"] == "2"  # the resumed sweep kept the space it started with
    assert list(tmp_path.iterdir()) == []


def test_a_killed_worker_resumes_from_its_last_round_in_s3(ray_cluster, s3_server, tmp_path):
    storage = s3_server("lth-killw")
    launcher = _launch(ray_cluster, storage, "--set", "seed=[0]", "--set", "rounds=3", "--set", "epochs=3",
                       "--name", "killw", cwd=tmp_path)
    experiment = location(storage) / "killw"
    result = _wait_for_round(experiment, 1)
    os.kill(result["pid"], signal.SIGKILL)
    output, _ = launcher.communicate(timeout=400)
    assert launcher.returncode == 0, output[-3000:]
    assert sorted(int(r["round"]) for r in _rows(experiment)) == [0, 1, 2, 3], output[-3000:]
    # the embedded θ_p was pre-trained on the driver and cached in the bucket, where the worker read it
    cache = location(storage) / ".ray_lth_cache"
    (weights,) = [name for name in cache.list() if name.endswith(".pt")]
    assert f"{weights}.json" in cache.list()
    assert _results(experiment)[0]["config"]["weights"] == join_uri(storage, ".ray_lth_cache", weights)
    reported = [r["round"] for r in _results(experiment)]
    # the restarted worker read its trajectory copy from the bucket: rounds 0 and 1 were not trained again
    assert reported.count(0) == 1 and reported.count(1) == 1, reported


def run_multinode_sweep(weights, storage) -> dict:
    """tests/multinode_sweep.py in a separate process (Ray's local multi-node cluster cannot share
    the session's instance), with a short temp dir (Ray's socket paths must stay under 108
    bytes) that also holds the cluster's address file (else /tmp/ray, absent on a fresh machine);
    its report line."""
    ray_temp = tempfile.mkdtemp(prefix="rlth-")
    try:
        result = subprocess.run([sys.executable, str(ROOT / "tests" / "multinode_sweep.py"), str(weights), str(storage),
                                 os.path.join(ray_temp, "ray")], env={**os.environ, "RAY_TMPDIR": ray_temp},
                                capture_output=True, text=True, timeout=400)
    finally:
        shutil.rmtree(ray_temp, ignore_errors=True)
    assert result.returncode == 0, result.stderr[-3000:]
    report = next(line for line in reversed(result.stdout.splitlines()) if line.startswith(REPORT_MARKER))
    return json.loads(report[len(REPORT_MARKER):])


def test_two_node_cluster_shares_one_s3_storage(s3_server, resnet8_weights):
    """Trials on both nodes of a two-node cluster, every checkpoint and mask in the one bucket (the
    storage two machines share; a local path only works on a file system they share)."""
    storage = s3_server("lth-nodes")
    (location(storage) / "resnet8.pt").write_bytes(resnet8_weights.read_bytes())
    report = run_multinode_sweep(join_uri(storage, "resnet8.pt"), storage)
    assert report["errors"] == [] and report["nodes"] == 2
    assert len(report["checkpoints"]) == 4  # 2 trials x rounds 0..1, both nodes' in the one bucket
    assert all(path.startswith("s3://lth-nodes/multinode/") for path in report["checkpoints"] + report["masks"])
    assert len([m for m in report["masks"] if m.endswith(("_00.rlthmask", "_01.rlthmask"))]) == 4


def test_the_temperature_ablation_keeps_its_tickets_and_tables_in_s3(ray_cluster, s3_server, resnet8_weights,
                                                                    tmp_path):
    """Table 2's ablation on object storage: the upstream ticket derived on the driver is cached in
    the bucket (where every node reads it), each trial's ticket and the tables land there too."""
    storage = s3_server("lth-ablation")
    (location(storage) / "resnet8.pt").write_bytes(resnet8_weights.read_bytes())
    tiny = ["--set", "model=resnet8", "--set", "epochs=1", "--set", "batch_size=64", "--set", "train_images=128",
            "--set", "eval_images=128", "--set", "retrieval_batch_size=64", "--set", "mask_round=1",
            "--set", "target_sparsity=0.36", "--set", "temperature=[0.5]", "--set", "downstream_epochs=1"]
    result = subprocess.run([sys.executable, str(ROOT / "launchers" / "sweep.py"), "--address", ray_cluster,
                             "--storage", storage, "--space", "simclr_temperature", "--name", "abl",
                             "--weights", join_uri(storage, "resnet8.pt"), *tiny],
                            capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    bucket = location(storage)
    cached = [n for n in (bucket / ".ray_lth_cache").list() if n.startswith("simclr-imp-resnet8-")]
    assert len(cached) == 1 and "mask_round_01.rlthmask" in (bucket / ".ray_lth_cache" / cached[0]).list()
    rows = list(csv.DictReader(io.StringIO((bucket / "abl" / "trials.csv").read_text())))
    assert [r["temperature"] for r in rows] == ["0.5"] and rows[0]["ticket_file"].startswith("s3://lth-ablation/abl/")
    assert load_mask(join_uri(storage, *rows[0]["ticket_file"][len("s3://lth-ablation/"):].split("/")))
    assert (bucket / "abl" / "temperature_table.csv").exists()
    assert list(tmp_path.iterdir()) == []  # nothing written into a local folder named after the URI
