import pytest
import torch

from ray_lth.models import build_model
from ray_lth.weights import WeightsError, load_pretrained, read_projection_head, read_state_dict


def _source(name="resnet8", seed=0):
    torch.manual_seed(seed)
    return build_model(name, 8).state_dict()


def _assert_backbone_loaded(model, source):
    state = model.state_dict()
    for key, value in source.items():
        if not key.startswith("fc."):
            assert torch.equal(state[key], value), key


def test_torchvision_state_dict_loads_backbone_and_keeps_the_new_head(tmp_path):
    source = _source()
    torch.save(source, tmp_path / "tv.pt")
    model = build_model("resnet8", 3)  # another head size: the head is task-specific
    head_before = model.fc.weight.detach().clone()
    assert load_pretrained(model, tmp_path / "tv.pt", ("fc",)) == "torchvision"
    _assert_backbone_loaded(model, source)
    assert torch.equal(model.fc.weight, head_before)


def test_moco_v2_checkpoint_loads_from_encoder_q(tmp_path):
    source = _source()
    state = {f"module.encoder_q.{k}": v for k, v in source.items() if not k.startswith("fc.")}
    state["module.encoder_q.fc.0.weight"] = torch.randn(64, 64)  # the MLP projection head
    state["module.encoder_q.fc.2.weight"] = torch.randn(128, 64)
    state.update({f"module.encoder_k.{k}": torch.zeros_like(v) for k, v in source.items()})
    state["module.queue"] = torch.randn(128, 16)
    torch.save({"epoch": 200, "arch": "resnet8", "state_dict": state}, tmp_path / "moco.pth.tar")
    model = build_model("resnet8", 10)
    assert load_pretrained(model, tmp_path / "moco.pth.tar", ("fc",)) == "moco"
    _assert_backbone_loaded(model, source)


def test_projection_heads_are_read_in_moco_and_the_paper_simclr_layouts_and_not_from_a_classifier(tmp_path):
    source = _source()
    head = {"0.weight": torch.randn(64, 64), "0.bias": torch.randn(64), "2.weight": torch.randn(128, 64),
            "2.bias": torch.randn(128)}
    moco = {f"module.encoder_q.{k}": v for k, v in source.items() if not k.startswith("fc.")}
    moco.update({f"module.encoder_q.fc.{k}": v for k, v in head.items()})
    moco.update({f"module.encoder_k.fc.{k}": torch.zeros_like(v) for k, v in head.items()})
    torch.save({"state_dict": moco}, tmp_path / "moco.pth.tar")
    paper_simclr = {**{k: v for k, v in source.items() if not k.startswith("fc.")},
                    **{f"fc.fc{1 if k[0] == '0' else 2}.{k[2:]}": v for k, v in head.items()}}
    torch.save({"state_dict": paper_simclr}, tmp_path / "simclr.pth")
    for name, keys in (("moco.pth.tar", "fc.0.weight"), ("simclr.pth", "fc.fc1.weight")):
        found, names = read_projection_head(tmp_path / name)
        assert found.keys() == head.keys() and names["0.weight"] == keys
        assert all(torch.equal(found[k], head[k]) for k in head)  # encoder_q's, not encoder_k's
    torch.save({"state_dict": source}, tmp_path / "converted.pth")  # fc: a linear classifier, not an MLP
    assert read_projection_head(tmp_path / "converted.pth", "simclr") == (None, {})
    del moco["module.encoder_q.fc.2.bias"]
    torch.save({"state_dict": moco}, tmp_path / "incomplete.pth.tar")
    with pytest.raises(WeightsError, match=r"incomplete projection head.*fc\.2\.bias"):
        read_projection_head(tmp_path / "incomplete.pth.tar")


def test_simclr_converted_checkpoint_loads(tmp_path):
    source = _source(seed=2)
    torch.save({"state_dict": source}, tmp_path / "simclr.pth")
    model = build_model("resnet8", 10)
    assert load_pretrained(model, tmp_path / "simclr.pth", ("fc",), "simclr") == "simclr"
    _assert_backbone_loaded(model, source)


class NotATensor:
    pass


def test_a_file_holding_objects_or_code_is_refused(tmp_path):
    torch.save({"conv1.weight": NotATensor()}, tmp_path / "evil.pt")
    with pytest.raises(WeightsError, match="evil.pt.*weights_only=True") as refused:
        read_state_dict(tmp_path / "evil.pt")
    # torch's own message suggests retrying with weights_only=False (running the file's code): never echoed
    assert "weights_only=False" not in str(refused.value) and "likely succeed" not in str(refused.value)


def test_another_architecture_lists_missing_and_unexpected_keys(tmp_path):
    torch.save(_source("resnet20"), tmp_path / "r20.pt")
    with pytest.raises(WeightsError, match=r"r20.pt.*missing keys.*unexpected keys \['layer1.1"):
        load_pretrained(build_model("resnet8", 10), tmp_path / "r20.pt", ("fc",))


def test_wrong_shapes_are_listed(tmp_path):
    source = _source()
    source["layer1.0.conv1.weight"] = torch.zeros(16, 16, 5, 5)
    torch.save(source, tmp_path / "shape.pt")
    with pytest.raises(WeightsError, match="layer1.0.conv1.weight: file"):
        load_pretrained(build_model("resnet8", 10), tmp_path / "shape.pt", ("fc",))


def test_not_a_state_dict_or_missing_file(tmp_path):
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    with pytest.raises(WeightsError, match="expected a state dict"):
        read_state_dict(tmp_path / "tensor.pt")
    with pytest.raises(WeightsError, match="does not exist"):
        read_state_dict(tmp_path / "absent.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(WeightsError, match="junk.pt"):
        read_state_dict(tmp_path / "junk.pt")
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}}, tmp_path / "nomoco.pt")
    with pytest.raises(WeightsError, match="not a MoCo v2 checkpoint"):
        read_state_dict(tmp_path / "nomoco.pt", "moco")
