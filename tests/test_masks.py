import pytest
import torch

from ray_lth.masks import MaskFileError, count_kept, load_mask, read_mask_header, save_mask, sparsity
from ray_lth.models import build_model, get_model_spec, prunable_parameters


def _random_mask(shapes, keep=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {f"l{i}.weight": torch.rand(s, generator=g) < keep for i, s in enumerate(shapes)}


def test_round_trip_is_exact_with_header(tmp_path):
    mask = _random_mask([(16, 3, 3, 3), (10, 7), (5,)])
    path = save_mask(mask, tmp_path / "m.rlthmask", {"round": 3})
    loaded = load_mask(path)
    assert list(loaded) == list(mask)
    assert all(torch.equal(loaded[n], mask[n]) and loaded[n].dtype == torch.bool for n in mask)
    header = read_mask_header(path)
    assert header["kept"] == count_kept(mask) and header["metadata"] == {"round": 3}
    assert abs(header["sparsity"] - sparsity(mask)) < 1e-12


def test_resnet50_mask_costs_at_most_013_bytes_per_weight(tmp_path):
    model = build_model("resnet50", 1000)
    weights = prunable_parameters(model, get_model_spec("resnet50").never_pruned)
    mask = {n: torch.rand(p.shape) < 0.2 for n, p in weights.items()}
    path = save_mask(mask, tmp_path / "r50.rlthmask")
    total = sum(p.numel() for p in weights.values())
    assert path.stat().st_size / total <= 0.13


def test_truncated_file_is_refused_by_name(tmp_path):
    path = save_mask(_random_mask([(64, 64)]), tmp_path / "cut.rlthmask")
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(MaskFileError, match="cut.rlthmask.*checksum"):
        load_mask(path)


def test_single_bit_flip_is_detected(tmp_path):
    path = save_mask(_random_mask([(64, 64)]), tmp_path / "flip.rlthmask")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(MaskFileError, match="flip.rlthmask"):
        load_mask(path)


def test_other_files_are_refused(tmp_path):
    not_mask = tmp_path / "weights.pt"
    torch.save({"a": torch.zeros(3)}, not_mask)
    with pytest.raises(MaskFileError, match="not a ray_lth mask file"):
        load_mask(not_mask)
    with pytest.raises(MaskFileError, match="does not exist"):
        load_mask(tmp_path / "absent.rlthmask")
    (tmp_path / "tiny").write_bytes(b"RLTH")
    with pytest.raises(MaskFileError, match="too short"):
        load_mask(tmp_path / "tiny")
