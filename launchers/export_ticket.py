"""Take a ticket away from a finished trajectory, and bring one back in.

    # export round 5 of a sweep trial (or of a launchers/imp.py --out folder; a path or a storage URI)
    python launchers/export_ticket.py export experiments/quick/<trial name> --round 5 --out tickets/r5
    # import: verify the checksums and that --weights is the θ_p it was found with, print it;
    # --sparse also builds the fast inference model and checks and times it against the masked dense one
    python launchers/export_ticket.py import tickets/r5 --weights theta_p.pt [--sparse --image-size 16]

A ticket is a folder: ``mask.rlthmask`` (bit-packed, SHA-256, the metadata sealed in its header),
``ticket.json`` (model, task, rewind, round, sparsity, metrics, θ_p's SHA-256) and, when the start is
not a weights file (θ_0, θ_k%), ``rewind_state.pt`` (the backbone at that start). Import refuses a tampered mask, edited
metadata or different weights, naming the file.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ray_lth.cli import format_table  # noqa: E402
from ray_lth.masks import MaskFileError  # noqa: E402
from ray_lth.storage import location  # noqa: E402
from ray_lth.experiment_layout import PARAMS_FILE, RUN_CONFIG_FILE, STATE_FILE, TRAJECTORY_DIR  # noqa: E402
from ray_lth.ticket import TicketError, build_ticket_model, export_ticket, load_ticket  # noqa: E402
from ray_lth.weights import WeightsError  # noqa: E402


def trajectory_and_config(path: str):
    """A sweep trial folder (Ray's params.json + trajectory/) or a launchers/imp.py --out folder
    (config.json + trajectory.json), local or in object storage: the folder holding the round
    masks and the run's config."""
    folder = location(path)
    if (folder / TRAJECTORY_DIR / STATE_FILE).exists() and (folder / PARAMS_FILE).exists():
        return folder / TRAJECTORY_DIR, json.loads((folder / PARAMS_FILE).read_text())
    if (folder / STATE_FILE).exists() and (folder / RUN_CONFIG_FILE).exists():
        return folder, json.loads((folder / RUN_CONFIG_FILE).read_text())
    raise TicketError(f"{path}: neither a sweep trial folder (params.json and trajectory/trajectory.json) "
                      f"nor a launchers/imp.py --out folder (config.json and trajectory.json)")


def cmd_export(args) -> int:
    trajectory, config = trajectory_and_config(args.trial)
    out = export_ticket(trajectory, args.round, config, args.out, source=str(location(args.trial)))
    meta = json.loads((out / "ticket.json").read_text())
    print(f"ticket {out}: {meta['model']} on {meta['task']}, round {meta['round']}, "
          f"sparsity {100 * meta['sparsity']:.2f} %, metric {100 * meta['metric']:.2f} %")
    return 0


def cmd_import(args) -> int:
    ticket = load_ticket(args.ticket, args.weights)
    meta = ticket.metadata
    weights = meta["weights"]
    print(f"ticket {ticket.folder}: verified (mask checksum, sealed metadata"
          f"{', weights sha256' if weights else ', rewind state sha256'})")
    rows = [["model", meta["model"]], ["task", meta["task"]], ["rewind", meta["rewind"]], ["seed", meta["seed"]],
            ["round", meta["round"]], ["sparsity %", f"{100 * meta['sparsity']:.2f}"],
            ["kept / total weights", f"{meta['kept']} / {meta['total']}"], ["metric %", f"{100 * meta['metric']:.2f}"],
            ["weights", f"{weights['name']} sha256 {weights['sha256'][:16]}" if weights else "in rewind_state.pt"],
            ["found in", meta["source"]]]
    print(format_table(["field", "value"], rows))
    if args.sparse:
        import torch

        from ray_lth.sparse_export import export_sparse

        torch.set_num_threads(args.threads)
        model = build_ticket_model(ticket, args.weights)
        x = torch.randn(args.batch_size, 3, args.image_size, args.image_size)
        export = export_sparse(model, ticket.mask, x)
        with torch.no_grad():
            difference = float((export.model(x) - model(x)).abs().max())
        print(format_table(["layer", "shape", "density %", "channels removed", "dense ms", "sparse ms", "kernel"],
                           export.summary_rows()))
        print(f"max |exported - masked dense| = {difference:.1e} on a random {tuple(x.shape)} input")
        if difference > 1e-4:
            print("error: the exported model disagrees with the masked dense model", file=sys.stderr)
            return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    export = sub.add_parser("export", help="write the ticket of one round of a trajectory")
    export.add_argument("trial", help="a sweep trial folder or a launchers/imp.py --out folder (a path or a storage URI)")
    export.add_argument("--round", type=int, required=True, help="the round whose mask to take")
    export.add_argument("--out", required=True, help="the ticket folder to create")
    imp = sub.add_parser("import", help="verify a ticket and rebuild its subnetwork")
    imp.add_argument("ticket", help="a ticket folder")
    imp.add_argument("--weights", help="the θ_p file the ticket was found with (checked by SHA-256)")
    imp.add_argument("--sparse", action="store_true", help="build the sparse inference model, check and time it")
    imp.add_argument("--image-size", type=int, default=16)
    imp.add_argument("--batch-size", type=int, default=1)
    imp.add_argument("--threads", type=int, default=1)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return cmd_export(args) if args.command == "export" else cmd_import(args)
    except (TicketError, MaskFileError, WeightsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
