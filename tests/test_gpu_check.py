"""benchmarks/gpu_check.py --cpu-smoke: every part of the GPU check runs on the CPU at toy size,
through the same code paths (Ray Tune trials at fractional resources, a Ray Train round, the
launcher's sweeps, the paper_cifar dry run), and lands in the JSON with its figures."""

PARTS = ["masked_step", "fractional_trials", "data_parallel", "data_pipeline", "default_sweep", "paper_cifar"]


def test_the_cpu_smoke_run_measures_every_part_without_an_error(gpu_check_smoke):
    done, report, _ = gpu_check_smoke
    assert report is not None, done.stdout[-3000:] + done.stderr[-3000:]
    parts = report["parts"]
    assert list(parts) == PARTS, done.stdout[-3000:] + done.stderr[-3000:]
    errors = {name: part["error"] for name, part in parts.items() if part["status"] == "error"}
    assert not errors and done.returncode == 0, (errors, done.stderr[-3000:])
    assert all(part["status"] == "ok" for part in parts.values())  # nothing skipped on the CPU in smoke mode
    environment = report["environment"]
    assert environment["cpus"] >= 1 and environment["torch"] and environment["git_commit"]
    # the figures each part exists for, and the checks that hold exactly on the CPU
    assert {"dense_ms", "masked_ms", "masked_over_dense"} <= parts["masked_step"]["fp32"].keys()
    trials = parts["fractional_trials"]
    assert trials["shared"]["wall_s"] > 0 and trials["alone"]["wall_s"] > 0 and trials["throughput_ratio"] > 0
    assert parts["data_parallel"]["masks_identical"] and parts["data_parallel"]["trained_weights_max_abs_diff"] == 0
    assert parts["data_pipeline"]["workers_0"]["loader_images_per_s_epoch1"] > 0
    sweep = parts["default_sweep"]
    assert sweep["cpu_bf16"]["against_cpu"]["verdicts_identical"]  # bf16 is fp32 on the CPU: the same sweep
    assert sweep["cpu_bf16"]["against_cpu"]["rounds_compared"] == sweep["cpu_fp32"]["rounds"] == 2
    assert parts["paper_cifar"]["rounds_reported"] == 4 and parts["paper_cifar"]["report_written"]
    assert "paper_cifar" in done.stdout and "throughput_ratio" in done.stdout  # the table is printed
