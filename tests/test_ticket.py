"""Ticket export -> import round trip; a tampered ticket or other weights are refused by name."""

import json

import pytest
import torch

from ray_lth.config import ImpConfig
from ray_lth.imp import run_trajectory
from ray_lth.masks import load_mask, save_mask
from ray_lth.models import get_model_spec, prunable_parameters
from ray_lth.ticket import TICKET_MASK, TICKET_META, TICKET_REWIND, TicketError, build_ticket_model, export_ticket, load_ticket
from ray_lth.weights import read_state_dict


def _trajectory(folder, **values):
    config, _ = _trajectory_and_start(folder, **values)
    return config


def _trajectory_and_start(folder, **values):
    """The config and the whole model the trajectory's rounds restarted from (in memory)."""
    config = {"model": "resnet8", "task": "digits", "rounds": 1, "epochs": 1, "batch_size": 128, "device": "cpu",
              **values}
    for result in run_trajectory(ImpConfig.from_dict(config)):
        result.state.save(folder)
    return config, result.state.rewind_state


@pytest.fixture(scope="module")
def pretrained_run(tmp_path_factory, resnet8_weights):
    torch.set_num_threads(1)  # module fixtures run before conftest's per-test one-thread fixture
    folder = tmp_path_factory.mktemp("run") / "trajectory"
    config = _trajectory(folder, weights=str(resnet8_weights), rewind="pretrained")
    return folder, config


def test_round_trip_rebuilds_the_masked_pretrained_subnetwork(pretrained_run, resnet8_weights, tmp_path):
    folder, config = pretrained_run
    ticket_dir = export_ticket(folder, 1, config, tmp_path / "ticket")
    assert not (ticket_dir / TICKET_REWIND).exists()  # θ_p is identified by hash, not copied
    ticket = load_ticket(ticket_dir, weights=resnet8_weights)
    original = load_mask(folder / "mask_round_01.rlthmask")
    assert all(torch.equal(ticket.mask[n], original[n]) for n in original)
    meta = json.loads((ticket_dir / TICKET_META).read_text())
    record = json.loads((folder / "trajectory.json").read_text())["records"][1]
    assert meta["round"] == 1 and meta["sparsity"] == pytest.approx(record["sparsity"]) == pytest.approx(0.2, abs=1e-3)
    assert meta["metric"] == record["metric"] and meta["model"] == "resnet8"
    model = build_ticket_model(ticket, resnet8_weights)
    theta_p, _ = read_state_dict(resnet8_weights)
    spec = get_model_spec("resnet8")
    for name, weight in prunable_parameters(model, spec.never_pruned).items():
        keep = original[name]
        assert torch.equal(weight.detach()[keep], theta_p[name][keep]) and not weight.detach()[~keep].any()
    with pytest.raises(TicketError, match="not empty"):
        export_ticket(folder, 1, config, ticket_dir)
    with pytest.raises(TicketError, match="round 5 has not finished"):
        export_ticket(folder, 5, config, tmp_path / "other")


def test_tampered_mask_or_metadata_is_refused(pretrained_run, resnet8_weights, tmp_path):
    folder, config = pretrained_run
    ticket_dir = export_ticket(folder, 1, config, tmp_path / "ticket")
    mask_path = ticket_dir / TICKET_MASK
    pristine = mask_path.read_bytes()

    flipped = bytearray(pristine)
    flipped[len(flipped) // 2] ^= 0x01  # one bit in the packed mask
    mask_path.write_bytes(bytes(flipped))
    with pytest.raises(TicketError, match="mask.rlthmask"):
        load_ticket(ticket_dir, weights=resnet8_weights)

    # a well-formed mask file (its own checksum valid) that is not the ticket's
    other = load_mask(folder / "mask_round_00.rlthmask")
    save_mask(other, mask_path, json.loads((ticket_dir / TICKET_META).read_text()))
    with pytest.raises(TicketError, match="mask.rlthmask: SHA-256 differs"):
        load_ticket(ticket_dir, weights=resnet8_weights)

    mask_path.write_bytes(pristine)
    meta = json.loads((ticket_dir / TICKET_META).read_text())
    (ticket_dir / TICKET_META).write_text(json.dumps({**meta, "sparsity": 0.99}))
    with pytest.raises(TicketError, match=r"fields \['sparsity'\] differ"):
        load_ticket(ticket_dir, weights=resnet8_weights)
    (ticket_dir / TICKET_META).write_text(json.dumps(meta))
    load_ticket(ticket_dir, weights=resnet8_weights)  # restored: accepted again


def test_different_or_missing_weights_are_refused(pretrained_run, resnet8_weights, tmp_path):
    folder, config = pretrained_run
    ticket_dir = export_ticket(folder, 1, config, tmp_path / "ticket")
    state, _ = read_state_dict(resnet8_weights)
    state["layer1.0.conv1.weight"] = state["layer1.0.conv1.weight"] * 1.01
    other = tmp_path / "other-weights.pt"
    torch.save(state, other)
    with pytest.raises(TicketError, match="other-weights.pt: sha256 .* not the weights this ticket was found with"):
        load_ticket(ticket_dir, weights=other)
    with pytest.raises(TicketError, match="pass that file"):
        load_ticket(ticket_dir)


@pytest.mark.parametrize("rewind", ["init", "early"])
def test_random_init_or_early_ticket_carries_its_start_and_checks_it(tmp_path, rewind):
    folder = tmp_path / "trajectory"
    config, started_from = _trajectory_and_start(folder, rewind=rewind)
    # θ_0 is rebuilt from the seed, never saved; θ_k% is saved once, in the trajectory folder
    assert (folder / "rewind_state.pt").exists() == (rewind == "early")
    ticket_dir = export_ticket(folder, 1, config, tmp_path / "ticket")
    ticket = load_ticket(ticket_dir)
    model = build_ticket_model(ticket)
    for name, value in model.state_dict().items():
        expected = started_from[name] * ticket.mask[name] if name in ticket.mask else started_from[name]
        assert torch.equal(value, expected), name
    if rewind == "init":
        with pytest.raises(TicketError, match="drop"):
            load_ticket(ticket_dir, weights=ticket_dir / TICKET_REWIND)
    rewind = ticket_dir / TICKET_REWIND
    state = torch.load(rewind, weights_only=True)
    state["fc.bias"] += 1.0
    torch.save(state, rewind)
    with pytest.raises(TicketError, match="rewind_state.pt: missing or its SHA-256 differs"):
        load_ticket(ticket_dir)
    if rewind == "early":  # a θ_k% that is not the one the trajectory recorded is refused by name
        saved = torch.load(folder / "rewind_state.pt", weights_only=True)
        saved["fc.bias"] += 1.0
        torch.save(saved, folder / "rewind_state.pt")
        with pytest.raises(TicketError, match=r"trajectory/rewind_state.pt: rewind state digest \w+ differs"):
            export_ticket(folder, 1, config, tmp_path / "other")


def test_launcher_exports_imports_and_refuses_other_weights(pretrained_run, resnet8_weights, tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    folder, config = pretrained_run
    run = tmp_path / "imp-run"  # the layout of a launchers/imp.py --out folder
    run.mkdir()
    for f in folder.iterdir():
        (run / f.name).write_bytes(f.read_bytes())
    (run / "config.json").write_text(json.dumps({**config, "weights": str(resnet8_weights), "seed": 0}))
    path = Path(__file__).resolve().parents[1] / "launchers" / "export_ticket.py"
    spec = importlib.util.spec_from_file_location("export_ticket_launcher", path)
    launcher = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(launcher)
    assert launcher.main(["export", str(run), "--round", "1", "--out", str(tmp_path / "t")]) == 0
    assert launcher.main(["import", str(tmp_path / "t"), "--weights", str(resnet8_weights), "--sparse"]) == 0
    out = capsys.readouterr().out
    assert "verified" in out and "max |exported - masked dense|" in out
    assert launcher.main(["import", str(tmp_path / "t"), "--weights", str(run / "mask_round_00.rlthmask")]) == 2
    assert "not the weights this ticket was found with" in capsys.readouterr().err
