import pytest

from ray_lth.config import ImpConfig
from ray_lth.tasks import DatasetMissingError, build_task
from ray_lth.tasks.shapes import make_shapes


def test_missing_real_dataset_names_the_folder_and_files(tmp_path):
    with pytest.raises(DatasetMissingError, match=rf"CIFAR-10 not found under --data-root {tmp_path}.*cifar-10-batches-py"):
        build_task("cifar10", data_root=str(tmp_path))
    with pytest.raises(DatasetMissingError, match="pass --data-root"):
        build_task("svhn")


def test_embedded_tasks_are_generated_offline_and_repeatable():
    digits = build_task("digits", image_size=16)
    assert digits.num_outputs == 10 and len(digits.train_set) + len(digits.test_set) == 1797
    a, la = make_shapes(20, 16, seed=5)
    b, lb = make_shapes(20, 16, seed=5)
    assert (a == b).all() and (la == lb).all() and a.shape == (20, 3, 16, 16)
    assert 0.0 <= a.min() and a.max() <= 1.0


def test_config_rejects_unknown_keys_and_bad_values_by_name(tmp_path):
    with pytest.raises(ValueError, match=r"unknown config keys \['learning_rate'\]"):
        ImpConfig.from_dict({"learning_rate": 0.1, "rewind": "init"})
    with pytest.raises(ValueError, match="prune_fraction must be in"):
        ImpConfig.from_dict({"prune_fraction": 1.2, "rewind": "init"})
    with pytest.raises(ValueError, match="model='vgg'"):
        ImpConfig.from_dict({"model": "vgg", "rewind": "init"})
    with pytest.raises(ValueError, match="give weights"):
        ImpConfig.from_dict({"rewind": "pretrained"})
    with pytest.raises(ValueError, match="no such file"):
        ImpConfig.from_dict({"weights": str(tmp_path / "absent.pt")})
    config = ImpConfig.from_dict({"rewind": "init", "epochs": 2, "lr": 0.3})
    assert (config.train.epochs, config.train.lr, config.train.milestones) == (2, 0.3, ())
