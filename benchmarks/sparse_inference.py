"""Dense vs exported sparse inference on the CPU, measured side by side in one run.

    python benchmarks/sparse_inference.py [--models resnet50] [--image-size 224] [--batch-size 1]
                                          [--sparsities 0.9 0.95 0.98] [--threads 1] [--layers]
                                          [--ticket DIR --weights FILE]

For each model and sparsity, four variants: the masked dense model (eval mode, BatchNorm separate);
BatchNorm folded (ray_lth.sparse_export with channel removal, sparse kernels and channels-last
off: what folding alone buys); folded with channels-last weights (what the dense layers alone
gain); the sparse export (folding, channels-last, dead inner channels removed, CSR matmuls where
the per-layer timing says they pay). "vs folded + CL" is thus what sparsity itself buys. Forward
passes are interleaved round-robin, so a drift in machine load hits every variant alike; the
median and the minimum per model are reported (on a machine shared with other jobs the minimum
is the least disturbed pass). The outputs of the export are checked against the masked dense
model (max |difference| is printed; > 1e-4 fails the run). --layers prints each export's
per-layer dense and sparse times: which layers bound the speed-up.

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


def forward_ms(models: dict, x: torch.Tensor, iterations: int) -> dict:
    """{name: (median, min)} milliseconds of interleaved forward passes: round-robin, so that a
    drift in machine load hits every variant alike; the minimum is the least disturbed pass."""
    times = {name: [] for name in models}
    with torch.no_grad():
        for model in models.values():
            model(x)  # warm-up
        for _ in range(iterations):
            for name, model in models.items():
                started = time.perf_counter()
                model(x)
                times[name].append(time.perf_counter() - started)
    return {name: (1e3 * statistics.median(t), 1e3 * min(t)) for name, t in times.items()}


def _both(pair) -> str:
    return f"{pair[0]:.2f} ({pair[1]:.2f})"


def _ratio(numerator, denominator) -> str:
    return f"{numerator[0] / denominator[0]:.2f}x ({numerator[1] / denominator[1]:.2f}x)"


def measure(label: str, model: torch.nn.Module, mask: dict, x: torch.Tensor, iterations: int, layer_table: bool):
    apply_mask(model, mask)
    # what the dense layers alone gain: BatchNorm folding, then also channels-last weights
    folded = export_sparse(model, mask, x, remove_channels=False, sparse_kernels=False, channels_last=False).model
    folded_cl = export_sparse(model, mask, x, remove_channels=False, sparse_kernels=False).model
    export = export_sparse(model, mask, x)
    with torch.no_grad():
        difference = float((export.model(x) - model(x)).abs().max())
    ms = forward_ms({"dense": model, "folded": folded, "folded_cl": folded_cl, "sparse": export.model}, x, iterations)
    if layer_table:
        print_layer_table(label, export)
    sparse_layers = sum(c.kernel == "sparse" for c in export.layers)
    removed = sum(c.channels_removed for c in export.layers)
    return [label, f"{100 * sparsity(mask):.2f}", _both(ms["dense"]), _both(ms["folded"]), _both(ms["folded_cl"]),
            _both(ms["sparse"]), _ratio(ms["dense"], ms["sparse"]), _ratio(ms["folded_cl"], ms["sparse"]),
            f"{sparse_layers}/{len(export.layers)}", removed, f"{difference:.1e}"], difference


def print_layer_table(label: str, export) -> None:
    """Each timed layer's dense and sparse best-of time (the export's own measurements) and
    totals: what the kernel choice can gain at most, and which layers bound it."""
    rows = export.summary_rows()
    timed = [c for c in export.layers if c.dense_ms is not None]
    dense = sum(c.dense_ms for c in timed)
    chosen = sum(c.sparse_ms if c.kernel == "sparse" else c.dense_ms for c in timed)
    rows.append(["all timed layers", "", "", "", f"{dense:.3f}", f"{chosen:.3f} chosen", f"{dense / chosen:.2f}x"])
    print(f"{label}: per-layer best-of times on each layer's own input (ms)")
    print(format_table(["layer", "shape", "density %", "channels removed", "dense ms", "sparse ms", "kernel"], rows))


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
    parser.add_argument("--layers", action="store_true", help="also print each export's per-layer timing table")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    x = torch.randn(args.batch_size, 3, args.image_size, args.image_size, generator=torch.Generator().manual_seed(1))
    rows, worst = [], 0.0
    if args.ticket:
        ticket = load_ticket(args.ticket, args.weights)
        row, difference = measure(f"ticket {ticket.metadata['model']} r{ticket.metadata['round']}",
                                  build_ticket_model(ticket, args.weights), ticket.mask, x, args.iterations,
                                  args.layers)
        rows.append(row)
        worst = difference
    else:
        for name in args.models:
            for target in args.sparsities:
                model = random_model(name)
                weights = {n: p.detach() for n, p in prunable_parameters(model, get_model_spec(name).never_pruned).items()}
                mask = global_magnitude_prune(weights, ones_mask(weights), target)
                row, difference = measure(name, model, mask, x, args.iterations, args.layers)
                rows.append(row)
                worst = max(worst, difference)
    print(f"CPU, {args.threads} thread(s), input {args.batch_size}x3x{args.image_size}x{args.image_size}, "
          f"{args.iterations} interleaved forward passes per model: median (min) ms")
    print(format_table(["model", "sparsity %", "dense ms", "BN-folded ms", "+ channels-last ms", "exported ms",
                        "speed-up vs dense", "vs folded + CL", "sparse layers", "channels removed", "max |diff|"],
                       rows))
    if worst > TOLERANCE:
        print(f"FAIL: exported outputs differ from the masked dense model by {worst:.1e} > {TOLERANCE}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
