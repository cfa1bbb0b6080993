"""Masked vs dense training step, measured side by side on the same batches in one run.

    python benchmarks/masked_step.py [--models resnet18 resnet50] [--image-size 112] [--batch-size 16] \
        [--precision bf16|fp32]

Methods (each an SGD step with momentum and weight decay at 80 % sparsity):
- dense: no mask;
- ray_lth: ray_lth.train.MaskedParameters, one fused foreach multiply of the gradients;
- per-param: multiply each weight and its momentum in place after the step, one op per tensor;
- prune-hooks: torch.nn.utils.prune reparametrisation (weight_orig * weight_mask in a forward hook).
Steps are interleaved round-robin and the median per method is reported, so drift in machine
load hits every method alike. Prints a table of step times and ratios to dense. ``--precision``
(ray_lth.device): bf16 (the default here) autocasts with channels-last on a GPU, fp32 computes as
the authors' scripts; on the CPU both are float32.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ray_lth.cli import format_table  # noqa: E402
from ray_lth.device import PRECISIONS, autocast, prepare_model, to_device_format  # noqa: E402
from ray_lth.masks import ones_mask  # noqa: E402
from ray_lth.models import build_model, get_model_spec, prunable_parameters  # noqa: E402
from ray_lth.pruning import global_magnitude_prune  # noqa: E402
from ray_lth.train import MaskedParameters  # noqa: E402


METHODS = ("dense", "ray_lth", "per-param", "prune-hooks")


def make_setup(name, method, mask, device, precision="fp32"):
    torch.manual_seed(0)
    model = prepare_model(build_model(name, 10), device, precision)
    params = dict(model.named_parameters())
    modules = dict(model.named_modules())
    after_backward, after_step = None, None
    if method == "ray_lth":
        masked = MaskedParameters(model, mask)
        masked.apply_to_weights()
        after_backward = masked.mask_gradients
    elif method == "per-param":
        pairs = [(params[n], mask[n].to(device, torch.float32)) for n in mask]

        def after_step(optimizer):
            with torch.no_grad():
                for p, m in pairs:
                    p.mul_(m)
                    buf = optimizer.state[p].get("momentum_buffer")
                    if buf is not None:
                        buf.mul_(m)
    elif method == "prune-hooks":
        for n in mask:
            torch_prune.custom_from_mask(modules[n.rsplit(".", 1)[0]], "weight", mask[n].to(device))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    return model, optimizer, after_backward, after_step


def step(setup, x, y, device, precision="fp32"):
    model, optimizer, after_backward, after_step = setup
    optimizer.zero_grad(set_to_none=True)
    with autocast(device, precision):
        loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    if after_backward:
        after_backward()
    optimizer.step()
    if after_step:
        after_step(optimizer)
    if device.type == "cuda":
        torch.cuda.synchronize()


def imp_mask(name):
    """The mask of 7 global magnitude rounds of 20 % on ``name``'s seeded init: 1 - 0.8^7 = 79 % sparsity."""
    torch.manual_seed(0)
    base = build_model(name, 10)
    weights = {n: p.detach() for n, p in prunable_parameters(base, get_model_spec(name).never_pruned).items()}
    mask = ones_mask(weights)
    for _ in range(7):
        mask = global_magnitude_prune(weights, mask, 0.2)
    return mask


def median_step_seconds(name, methods, device, precision="fp32", image_size=112, batch_size=16, steps=15):
    """{method: median seconds of a training step}, the methods' steps interleaved round-robin
    on the same batches after 2 warm-up steps each."""
    mask = imp_mask(name)
    setups = {m: make_setup(name, m, mask, device, precision) for m in methods}
    g = torch.Generator().manual_seed(0)
    batches = [(to_device_format(torch.randn(batch_size, 3, image_size, image_size, generator=g).to(device), device,
                                 precision),
                torch.randint(0, 10, (batch_size,), generator=g).to(device)) for _ in range(3)]
    times = {m: [] for m in methods}
    for i in range(steps + 2):
        x, y = batches[i % len(batches)]
        for m in methods:
            start = time.perf_counter()
            step(setups[m], x, y, device, precision)
            if i >= 2:  # the first steps warm up allocators and kernels
                times[m].append(time.perf_counter() - start)
    return {m: statistics.median(t) for m, t in times.items()}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="+", default=["resnet18", "resnet50"])
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--precision", choices=PRECISIONS, default="bf16")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = []
    for name in args.models:
        medians = median_step_seconds(name, METHODS, device, args.precision, args.image_size, args.batch_size,
                                      args.steps)
        for m in METHODS:
            rows.append([name, m, f"{1000 * medians[m]:.1f}", f"{medians[m] / medians['dense']:.3f}"])
    print(f"device={device} precision={args.precision} threads={torch.get_num_threads()} image={args.image_size} "
          f"batch={args.batch_size} steps={args.steps} sparsity=79.03%")
    print(format_table(["model", "method", "ms/step (median)", "ratio to dense"], rows))


if __name__ == "__main__":
    main()
