"""Dense vs exported sparse inference on the CPU, measured side by side in one run.

    python benchmarks/sparse_inference.py [--models resnet50] [--image-size 224] [--batch-size 1]
                                          [--sparsities 0.9 0.95 0.98] [--threads 1] [--ticket DIR --weights FILE]

For each model and sparsity: the masked dense model (eval mode, BatchNorm separate), the same with
BatchNorm folded (ray_lth.sparse_export with channel removal and sparse kernels off: what folding alone buys), and the
sparse export (folding, dead inner channels removed, CSR matmuls where the per-layer timing says
they pay). Forward passes are interleaved round-robin and the median per model is reported, so a
drift in machine load hits every variant alike. The outputs of the export are checked against the
masked dense model (max |difference| is printed; > 1e-4 fails the run).

Masks: one-shot global magnitude pruning (ray_lth.pruning, as IMP's rule) of the seeded random
initialisation, with BatchNorm statistics drawn at random so that folding is not trivial; or, with
--ticket, a real ticket (launchers/export_ticket.py) at its own sparsity.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ray_lth.cli import format_table  # noqa: E402
from ray_lth.masks import ones_mask, sparsity  # noqa: E402
from ray_lth.models import build_model, get_model_spec, prunable_parameters  # noqa: E402
from ray_lth.pruning import global_magnitude_prune  # noqa: E402
from ray_lth.rewind import apply_mask  # noqa: E402
from ray_lth.sparse_export import export_sparse  # noqa: E402
from ray_lth.ticket import build_ticket_model, load_ticket  # noqa: E402

TOLERANCE = 1e-4


def random_model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(name, 10).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
    return model


def median_ms(models: dict, x: torch.Tensor, iterations: int) -> dict:
    times = {name: [] for name in models}
    with torch.no_grad():
        for model in models.values():
            model(x)  # warm-up
        for _ in range(iterations):
            for name, model in models.items():
                started = time.perf_counter()
                model(x)
                times[name].append(time.perf_counter() - started)
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def measure(label: str, model: torch.nn.Module, mask: dict, x: torch.Tensor, iterations: int) -> list:
    apply_mask(model, mask)
    folded = export_sparse(model, mask, x, remove_channels=False, sparse_kernels=False).model  # folding alone
    export = export_sparse(model, mask, x)
    with torch.no_grad():
        difference = float((export.model(x) - model(x)).abs().max())
    ms = median_ms({"dense": model, "folded": folded, "sparse": export.model}, x, iterations)
    sparse_layers = sum(c.kernel == "sparse" for c in export.layers)
    removed = sum(c.channels_removed for c in export.layers)
    return [label, f"{100 * sparsity(mask):.2f}", f"{ms['dense']:.2f}", f"{ms['folded']:.2f}", f"{ms['sparse']:.2f}",
            f"{ms['dense'] / ms['sparse']:.2f}x", f"{ms['folded'] / ms['sparse']:.2f}x",
            f"{sparse_layers}/{len(export.layers)}", removed, f"{difference:.1e}"], difference


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["resnet50"])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--sparsities", nargs="+", type=float, default=[0.9, 0.95, 0.98])
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: least disturbed by other load)")
    parser.add_argument("--ticket", help="a ticket folder to measure instead of random masks")
    parser.add_argument("--weights", help="the ticket's θ_p file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    x = torch.randn(args.batch_size, 3, args.image_size, args.image_size, generator=torch.Generator().manual_seed(1))
    rows, worst = [], 0.0
    if args.ticket:
        ticket = load_ticket(args.ticket, args.weights)
        row, difference = measure(f"ticket {ticket.metadata['model']} r{ticket.metadata['round']}",
                                  build_ticket_model(ticket, args.weights), ticket.mask, x, args.iterations)
        rows.append(row)
        worst = difference
    else:
        for name in args.models:
            for target in args.sparsities:
                model = random_model(name)
                weights = {n: p.detach() for n, p in prunable_parameters(model, get_model_spec(name).never_pruned).items()}
                mask = global_magnitude_prune(weights, ones_mask(weights), target)
                row, difference = measure(name, model, mask, x, args.iterations)
                rows.append(row)
                worst = max(worst, difference)
    print(f"CPU, {args.threads} thread(s), input {args.batch_size}x3x{args.image_size}x{args.image_size}, "
          f"median of {args.iterations} interleaved forward passes")
    print(format_table(["model", "sparsity %", "dense ms", "BN-folded ms", "exported ms", "speed-up vs dense",
                        "vs folded", "sparse layers", "channels removed", "max |diff|"], rows))
    if worst > TOLERANCE:
        print(f"FAIL: exported outputs differ from the masked dense model by {worst:.1e} > {TOLERANCE}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
