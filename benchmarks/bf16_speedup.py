"""fp32 against opt-in bf16 (``precision=bf16``: autocast to bfloat16, channels-last weights and
images), one masked training step of ResNet-50 at 224 px, batch 64, side by side in one run.

    python benchmarks/bf16_speedup.py [--batch-size 64] [--image-size 224] [--steps 30]

GPU only: on a machine without CUDA it prints "skipped: no CUDA device". Each precision gets its
own model (same seed, 80 % of the prunable weights masked, as a mid-IMP round); steps are
interleaved round-robin after a warm-up, so drift in clocks or load hits both alike, and the
median step time per precision is reported with the ratio fp32 / bf16 (the speedup bf16 buys,
at the cost of no longer computing as the authors' fp32 scripts).
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ray_lth.cli import format_table  # noqa: E402
from ray_lth.device import PRECISIONS, autocast, prepare_model, to_device_format  # noqa: E402
from ray_lth.masks import ones_mask  # noqa: E402
from ray_lth.models import build_model, get_model_spec, prunable_parameters  # noqa: E402
from ray_lth.pruning import global_magnitude_prune  # noqa: E402
from ray_lth.train import MaskedParameters  # noqa: E402


def make_step(precision: str, images: torch.Tensor, labels: torch.Tensor, device: torch.device):
    """A closure running one masked SGD step of ResNet-50 in ``precision``."""
    torch.manual_seed(0)
    model = build_model("resnet50", 1000)
    spec = get_model_spec("resnet50")
    prunable = prunable_parameters(model, spec.never_pruned)
    mask = global_magnitude_prune({n: p.detach() for n, p in prunable.items()}, ones_mask(prunable), 0.8)
    prepare_model(model, device, precision)
    masked = MaskedParameters(model, mask)
    masked.apply_to_weights()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    inputs = to_device_format(images, device, precision)
    model.train()

    def step():
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, precision):
            loss = nn.functional.cross_entropy(model(inputs).float(), labels)
        loss.backward()
        masked.mask_gradients()
        optimizer.step()

    return step


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per precision (after 5 warm-up steps)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("skipped: no CUDA device")
        return 0
    device = torch.device("cuda")
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(args.batch_size, 3, args.image_size, args.image_size, generator=generator).to(device)
    labels = torch.randint(1000, (args.batch_size,), generator=generator).to(device)
    steps = {precision: make_step(precision, images, labels, device) for precision in PRECISIONS}
    for _ in range(5):  # cuDNN autotuning, allocator, first-call costs
        for step in steps.values():
            step()
    torch.cuda.synchronize()
    times = {precision: [] for precision in PRECISIONS}
    for _ in range(args.steps):
        for precision, step in steps.items():
            started = time.perf_counter()
            step()
            torch.cuda.synchronize()
            times[precision].append(time.perf_counter() - started)
    median = {precision: statistics.median(t) for precision, t in times.items()}
    print(f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}, ResNet-50 {args.image_size} px, "
          f"batch {args.batch_size}, 80 % masked, median of {args.steps} interleaved steps")
    print(format_table(["precision", "step ms", "images/s"],
                       [[p, f"{1000 * median[p]:.1f}", f"{args.batch_size / median[p]:.0f}"] for p in PRECISIONS]))
    print(f"speedup fp32 / bf16: {median['fp32'] / median['bf16']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
