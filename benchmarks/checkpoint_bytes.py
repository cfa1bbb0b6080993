"""Bytes a round's Tune checkpoint takes, before and after lean checkpoints, for ResNet-50 and resnet20.

    python benchmarks/checkpoint_bytes.py [--models resnet50 resnet20] [--rounds 19] [--num-outputs 10]

BEFORE (the old format, written the old way into a folder): trajectory.json, the masks of the
finished and the next round, and ``rewind_state.pt``, the whole model at the rewind point.
AFTER: what ``TrajectoryState.save_checkpoint`` writes (the trainable's ``_report`` uploads that
folder): trajectory.json, with a reference to θ_p by its SHA-256, and the next round's mask.
Both are measured on real files, at the last round of a ``--rounds`` trajectory (its
trajectory.json holds every round's record, so it is the largest). The models are built with
random weights (no download); θ_p is that state written to a temporary file in torchvision's
format. Goal (issue 14): AFTER <= mask bytes + 64 KiB, where the mask bytes are the mask
file's (1 bit per prunable weight, plus its header and checksum).
"""

import argparse
import io
import json
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ray_lth.cli import format_table  # noqa: E402
from ray_lth.masks import count_total, save_mask  # noqa: E402
from ray_lth.models import build_model, get_model_spec, prunable_parameters  # noqa: E402
from ray_lth.rewind import capture_state  # noqa: E402
from ray_lth.experiment_layout import MASK_FILE, STATE_FILE  # noqa: E402
from ray_lth.trajectory_state import RewindReference, RoundRecord, TrajectoryState  # noqa: E402

LIMIT = 64 * 1024


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir())


def record(round_index: int, density: float) -> RoundRecord:
    """A round record with the metrics a best-validation classification round reports."""
    metrics = {"top1": 0.9312, "top5": 0.9981, "test_loss": 0.2213, "val_top1": 0.9288, "val_loss": 0.2301,
               "best_epoch": 182, "train_loss": 0.0123, "iterations": 70312, "epoch_seconds": 41.7,
               "lr_last": 0.0001, "images_per_second": 1190.4}
    return RoundRecord(round=round_index, sparsity=1 - density, metrics=metrics, metric=metrics["top1"],
                       epochs=182 * (round_index + 1), seconds=7612.3, mask_digest="0123456789abcdef",
                       start_digest="f" * 64)


def measure(model_name: str, rounds: int, num_outputs: int, work: Path) -> list:
    torch.manual_seed(0)
    model = build_model(model_name, num_outputs)
    spec = get_model_spec(model_name)
    theta_p = work / f"{model_name}-theta_p.pth"
    torch.save(model.state_dict(), theta_p)  # torchvision's format: a plain state dict
    rewind_state = capture_state(model)
    prunable = prunable_parameters(model, spec.never_pruned)
    density = 0.8 ** rounds  # the bit-packed mask's size does not depend on which weights are kept
    masks = [{n: torch.rand(p.shape) < 0.8 ** k for n, p in prunable.items()} for k in (rounds - 1, rounds)]
    records = [record(k, 0.8 ** k) for k in range(rounds)]
    reference = RewindReference.of(rewind_state, "recompute", num_outputs, theta_p)
    state = TrajectoryState(next_round=rounds, mask=masks[1], round_mask=masks[0], rewind_state=rewind_state,
                            rewind=reference, records=records)

    after = work / f"{model_name}-after"
    state.save_checkpoint(after)

    before = work / f"{model_name}-before"  # the format this replaces, written as it was
    before.mkdir()
    save_mask(masks[0], before / MASK_FILE.format(rounds - 1), {"round": rounds - 1})
    save_mask(masks[1], before / MASK_FILE.format(rounds), {"round": rounds})
    buffer = io.BytesIO()
    torch.save(rewind_state, buffer)
    (before / "rewind_state.pt").write_bytes(buffer.getvalue())
    (before / STATE_FILE).write_text(json.dumps({"next_round": rounds, "records": [asdict(r) for r in records]},
                                                indent=1))

    mask_file = (after / MASK_FILE.format(rounds)).stat().st_size
    after_bytes = folder_bytes(after)
    return [model_name, count_total(masks[1]), f"{100 * (1 - density):.2f}", folder_bytes(before), after_bytes,
            mask_file, -(-count_total(masks[1]) // 8), after_bytes - mask_file,
            "yes" if after_bytes <= mask_file + LIMIT else "NO"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["resnet50", "resnet20"])
    parser.add_argument("--rounds", type=int, default=19, help="the round whose checkpoint is measured (paper: 19)")
    parser.add_argument("--num-outputs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ray_lth_ckpt_bytes_") as tmp:
        rows = [measure(name, args.rounds, args.num_outputs, Path(tmp)) for name in args.models]
    print(f"bytes per round's checkpoint at round {args.rounds} (trajectory.json with {args.rounds} records)")
    print(format_table(["model", "prunable weights", "sparsity %", "BEFORE bytes", "AFTER bytes",
                        "mask file bytes", "mask bits / 8", "AFTER - mask file", "AFTER <= mask + 64 KiB"], rows))


if __name__ == "__main__":
    main()
