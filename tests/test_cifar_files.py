"""CIFAR batches read from the published pickle format, checked against torchvision's own reader."""

import numpy as np
import pytest
from torchvision.datasets import CIFAR10

from paper_files import write_cifar10
from ray_lth.tasks.cifar_files import CifarBatches, CifarFormatError, _md5
from ray_lth.tasks.datasets import DatasetMissingError, load_classification_dataset


def test_reader_matches_torchvision_on_the_same_files(tmp_path, monkeypatch):
    write_cifar10(tmp_path, n_train=53, n_test=17)
    folder = tmp_path / "cifar-10-batches-py"
    # torchvision refuses files that are not the official ones: give it these files' md5 to compare
    monkeypatch.setattr(CIFAR10, "train_list", [[n, _md5(folder / n)] for n, _ in CIFAR10.train_list])
    monkeypatch.setattr(CIFAR10, "test_list", [[n, _md5(folder / n)] for n, _ in CIFAR10.test_list])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": _md5(folder / "batches.meta")})
    for train, size in ((True, 53), (False, 17)):
        ours, reference = CifarBatches("cifar10", tmp_path, train), CIFAR10(tmp_path, train=train)
        assert len(ours) == len(reference) == size and ours.targets == reference.targets
        assert not ours.official
        for i in (0, size // 2, size - 1):
            assert np.array_equal(np.asarray(ours[i][0]), np.asarray(reference[i][0]))


def test_missing_and_malformed_batches_are_named(tmp_path):
    with pytest.raises(DatasetMissingError, match="cifar-10-batches-py/ with data_batch_1..5"):
        load_classification_dataset("cifar10", True, str(tmp_path))
    write_cifar10(tmp_path, n_train=10, n_test=5)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(CifarFormatError, match="data_batch_3: not a CIFAR batch pickle"):
        CifarBatches("cifar10", tmp_path, True)
