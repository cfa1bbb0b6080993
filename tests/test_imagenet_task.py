"""The supervised ImageNet task (issue 12, item 4): ImageFolder train/val, the θ_p head loaded as
the task's own and restored every round, Table 1's schedule, and the pretrain_imagenet space."""

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import functional as TF

from ray_lth.config import ImpConfig
from ray_lth.imp import run_trajectory
from ray_lth.models import build_model
from ray_lth.spaces import load_space
from ray_lth.tasks import build_task
from ray_lth.weights import WeightsError

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def write_image_folder(root, classes=("n01440764", "n01443537", "n01484850"), per_class=4, size=(40, 30)):
    """<root>/imagenet/{train,val}/<wnid>/<k>.JPEG, random pixels."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for wnid in classes:
            folder = root / "imagenet" / split / wnid
            folder.mkdir(parents=True)
            for k in range(per_class):
                pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{wnid}_{k}.JPEG", quality=95)
    return root


def write_weights(path, model_name, num_classes, seed=7):
    torch.manual_seed(seed)
    state = build_model(model_name, num_classes).state_dict()
    torch.save(state, path)
    return state


def test_imagenet_folders_load_with_the_standard_transforms(tmp_path):
    root = write_image_folder(tmp_path)
    task = build_task("imagenet", str(root), image_size=32)
    assert task.num_outputs == 3 and len(task.train_set) == 12 and len(task.test_set) == 12
    image, label = task.train_set[5]
    assert image.shape == (3, 32, 32) and label == 1
    # evaluation: Resize(256/224 of the crop) + CenterCrop + ImageNet mean/std, against torchvision's
    # functional ops on the same file
    path, label = task.test_set.samples[0]
    with Image.open(path) as pil:
        expected = TF.normalize(TF.to_tensor(TF.center_crop(TF.resize(pil.convert("RGB"), round(32 * 256 / 224)), 32)),
                                IMAGENET_MEAN, IMAGENET_STD)
    cpu = torch.device("cpu")  # the loader's uint8 image, made the model's input where the model runs
    assert torch.allclose(task.model_inputs(task.test_set[0][0][None], cpu)[0], expected, atol=1e-5)
    raw_task = build_task("imagenet", str(root), image_size=32, normalize="none")
    raw = raw_task.model_inputs(raw_task.test_set[0][0][None], cpu)[0]
    assert torch.allclose(raw, expected * torch.tensor(IMAGENET_STD)[:, None, None]
                          + torch.tensor(IMAGENET_MEAN)[:, None, None], atol=1e-5)


def test_imagenet_uses_table_1_schedule_by_default():
    config = ImpConfig.from_dict({"model": "resnet8", "task": "imagenet", "rewind": "init"})
    train = config.train
    # Table 1, ImageNet column: 10 epochs, batch 256, lr 1e-4 fixed, SGD momentum 0.9, wd 1e-4
    assert (train.epochs, train.batch_size, train.lr, train.milestones, train.momentum, train.weight_decay) == \
        (10, 256, 1e-4, (), 0.9, 1e-4)


def test_the_weights_head_is_the_imagenet_tasks_own_and_is_restored_every_round(tmp_path):
    root = write_image_folder(tmp_path)
    theta_p = write_weights(tmp_path / "theta_p.pt", "resnet8", 3)
    config = ImpConfig.from_dict({"model": "resnet8", "task": "imagenet", "weights": str(tmp_path / "theta_p.pt"),
                                  "data_root": str(root), "image_size": 16, "rounds": 2, "epochs": 1,
                                  "batch_size": 8, "lr": 0.05, "device": "cpu"})
    starts = []
    for result in run_trajectory(config):
        starts.append(result.state.rewind_state)
    for rewind_state in starts:  # what every round restarts from
        for key in ("fc.weight", "fc.bias", "conv1.weight", "layer1.0.conv1.weight"):
            assert torch.equal(rewind_state[key], theta_p[key]), key
    # a downstream task of the same file keeps a new head
    other = ImpConfig.from_dict({"model": "resnet8", "task": "digits", "weights": str(tmp_path / "theta_p.pt"),
                                 "rounds": 0, "epochs": 1, "device": "cpu"})
    rewind_state = next(run_trajectory(other)).state.rewind_state
    assert not torch.equal(rewind_state["fc.weight"][:3], theta_p["fc.weight"])


def test_a_head_that_does_not_fit_the_class_folders_is_refused(tmp_path):
    root = write_image_folder(tmp_path)  # 3 class folders
    write_weights(tmp_path / "theta_p.pt", "resnet8", 5)
    config = ImpConfig.from_dict({"model": "resnet8", "task": "imagenet", "weights": str(tmp_path / "theta_p.pt"),
                                  "data_root": str(root), "image_size": 16, "rounds": 0, "epochs": 1, "device": "cpu"})
    with pytest.raises(WeightsError, match=r"head is loaded as the task's own.*fc.weight: file \(5, 64\) vs model "
                                           r"\(3, 64\).*as many outputs as the task has classes"):
        next(run_trajectory(config))


def test_a_file_without_a_classification_head_is_refused_for_imagenet(tmp_path):
    root = write_image_folder(tmp_path)
    state = {f"module.encoder_q.{k}": v for k, v in write_weights(tmp_path / "tv.pt", "resnet8", 3).items()
             if not k.startswith("fc.")}
    state["module.encoder_q.fc.0.weight"] = torch.randn(64, 64)  # a MoCo v2 MLP, not a 3-way classifier
    torch.save({"state_dict": state}, tmp_path / "moco.pth.tar")
    config = ImpConfig.from_dict({"model": "resnet8", "task": "imagenet", "weights": str(tmp_path / "moco.pth.tar"),
                                  "data_root": str(root), "image_size": 16, "rounds": 0, "epochs": 1, "device": "cpu"})
    with pytest.raises(WeightsError, match=r"\(moco format\).*head is loaded as the task's own.*fc.0.weight"):
        next(run_trajectory(config))


def test_train_and_val_must_hold_the_same_classes(tmp_path):
    root = write_image_folder(tmp_path)
    write_image_folder(tmp_path / "extra", classes=("n09999999",))
    (tmp_path / "extra" / "imagenet" / "val" / "n09999999").rename(root / "imagenet" / "val" / "n09999999")
    with pytest.raises(ValueError, match="training split has 3 classes, the test split 4"):
        build_task("imagenet", str(root), image_size=16)


def test_pretrain_imagenet_space_runs_imp_on_imagenet_from_the_weights(tmp_path):
    from ray_lth.spaces import resolve_weights

    space = load_space("pretrain_imagenet")
    with pytest.raises(ValueError, match="needs pre-trained weights"):
        resolve_weights(space, None, tmp_path)
    write_weights(tmp_path / "r50.pt", "resnet8", 3)
    configs = resolve_weights(space, str(tmp_path / "r50.pt"), tmp_path).validate()
    assert {(c.model, c.task, c.rewind, c.schedule, c.rounds, c.image_size) for c in configs} == \
        {("resnet50", "imagenet", "pretrained", "imagenet", 18, 224)}


def test_round_0_scores_theta_p_untrained_and_prunes_its_magnitudes(tmp_path):
    """As main_imp_imagenet.py: θ_Img already is the dense network trained on ImageNet, so round 0
    only validates it, and the first mask is global magnitude pruning of θ_p itself."""
    from ray_lth.models import get_model_spec, prunable_parameters
    from ray_lth.pruning import prune

    root = write_image_folder(tmp_path)
    write_weights(tmp_path / "theta_p.pt", "resnet8", 3)
    values = {"model": "resnet8", "task": "imagenet", "weights": str(tmp_path / "theta_p.pt"), "data_root": str(root),
              "image_size": 16, "rounds": 1, "epochs": 2, "batch_size": 8, "lr": 0.05, "device": "cpu"}
    config = ImpConfig.from_dict(values)
    assert (config.train_dense, config.selection) == (False, "best_test")
    round_0, round_1 = list(run_trajectory(config))
    assert round_0.record.epochs == 0 and round_0.record.metrics["iterations"] == 0
    # independent reference: θ_p scored by the task, and torch-free global magnitude pruning of θ_p
    model = build_model("resnet8", 3)
    model.load_state_dict(torch.load(tmp_path / "theta_p.pt"))
    task = build_task("imagenet", str(root), 16)
    assert round_0.record.metric == task.evaluate(model, torch.device("cpu"))["top1"]
    weights = {k: p.detach() for k, p in prunable_parameters(model, get_model_spec("resnet8").never_pruned).items()}
    everything = torch.cat([w.abs().flatten() for w in weights.values()])
    threshold = everything.sort().values[round(0.2 * everything.numel()) - 1]
    for name, keep in round_0.state.mask.items():
        assert torch.equal(keep, weights[name].abs() > threshold), name
    assert round_1.record.epochs == 2 and 1 <= round_1.record.metrics["best_epoch"] <= 2
    # training from scratch (no θ_p) trains its dense round, and best_test needs no validation split
    assert ImpConfig.from_dict({**values, "weights": None, "rewind": "init"}).train_dense
    with pytest.raises(ValueError, match="train_dense=False"):
        ImpConfig.from_dict({**values, "weights": None, "rewind": "init", "train_dense": False})
