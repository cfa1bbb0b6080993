"""Which epoch a round reports: the validation split held out of the training images, the test
scores of the best-validation epoch (against an argmax over curves written here), and 'last'."""

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from ray_lth.config import ImpConfig
from ray_lth.imp import run_trajectory
from ray_lth.masks import ones_mask
from ray_lth.selection import epoch_selection
from ray_lth.tasks import build_task
from ray_lth.tasks.datasets import embedded_digits
from ray_lth.tasks.validation_split import split_validation
from ray_lth.train import TrainHparams, train_masked

CPU = torch.device("cpu")
# per-epoch validation and test accuracies; epochs 2 and 4 (1-based) tie on validation
VAL = [0.30, 0.55, 0.40, 0.55, 0.50]
TEST = [0.31, 0.52, 0.47, 0.58, 0.60]


class _CurveTask:
    """A task whose scores after epoch e are VAL[e] and TEST[e]; it counts its evaluations."""

    name, metric, num_outputs = "curves", "top1", 10

    def __init__(self):
        self.epochs_started, self.test_calls, self.val_calls = 0, 0, 0

    def batches_per_epoch(self, batch_size):
        return 1

    def train_batches(self, batch_size, generator):
        self.epochs_started += 1
        return [torch.randn(2, 3, 16, 16, generator=generator)]

    def loss(self, model, batch, device):
        return model(batch).pow(2).mean()

    def evaluate(self, model, device):
        self.test_calls += 1
        return {"top1": TEST[self.epochs_started - 1], "test_loss": 0.0}

    def evaluate_validation(self, model, device):
        self.val_calls += 1
        return {"top1": VAL[self.epochs_started - 1], "test_loss": 0.0}


def _first_argmax(values):
    return max(range(len(values)), key=lambda i: (values[i], -i))


def test_validation_split_is_disjoint_sized_fixed_and_independent_of_the_trial_seed():
    torch.manual_seed(1)
    task = build_task("digits", val_images=144)
    torch.manual_seed(2)  # another trial seed: the global RNG must not move the split
    again = build_task("digits", val_images=144)
    train_index, val_index = task.train_set.indices, task.val_set.indices
    assert (len(train_index), len(val_index)) == (1437 - 144, 144)
    assert set(train_index).isdisjoint(val_index) and set(train_index) | set(val_index) == set(range(1437))
    assert (again.train_set.indices, again.val_set.indices) == (train_index, val_index)
    assert val_index == list(range(1437 - 144, 1437))  # the authors' split: the last training images
    digits, _ = embedded_digits(True)
    image, label = task.val_set[5]
    assert torch.equal(image, digits[val_index[5]][0]) and label == digits[val_index[5]][1]
    assert len(task.test_set) == 360  # the test set is untouched


class _Numbers(Dataset):
    def __init__(self, n, transform):
        self.data, self.transform = torch.arange(n, dtype=torch.float32), transform

    def __len__(self):
        return len(self.data)

    def __getitem__(self, index):
        return self.transform(self.data[index]), index


def test_validation_images_go_through_the_test_transform_and_training_keeps_its_own():
    train_set, test_set = _Numbers(50, lambda x: x + 1000), _Numbers(10, lambda x: x)  # +1000 stands for augmentation
    train_part, val_part = split_validation(train_set, test_set, 5)
    assert all(val_part[i][0].item() == val_part.indices[i] for i in range(5))
    assert all(train_part[i][0].item() == train_part.indices[i] + 1000 for i in range(len(train_part)))
    assert train_set[0][0].item() == 1000  # the training set itself keeps its transform
    with pytest.raises(ValueError, match="val_images"):
        split_validation(train_set, test_set, 50)


def test_best_val_reports_the_test_scores_of_the_first_best_validation_epoch():
    task, model = _CurveTask(), nn.Conv2d(3, 1, 3)
    selection = epoch_selection("best_val", task, model, CPU)
    hparams = TrainHparams(epochs=len(VAL), batch_size=2, lr=0.01)
    train_masked(model, task, hparams, ones_mask(dict(model.named_parameters())), CPU,
                 torch.Generator().manual_seed(0), epoch_hook=selection.after_epoch)
    best = _first_argmax(VAL)
    assert best == 1  # the tie with epoch index 3 goes to the earlier epoch, as np.argmax does
    metrics = selection.round_metrics()
    assert metrics["top1"] == TEST[best] and metrics["val_top1"] == VAL[best] and metrics["best_epoch"] == best + 1
    assert task.val_calls == len(VAL)


@pytest.mark.parametrize("selection", ["best_val", "last"])
def test_a_round_reports_the_selected_epoch(selection):
    config = ImpConfig.from_dict(dict(model="resnet8", task="digits", rewind="init", rounds=0, epochs=len(VAL),
                                      batch_size=2, device="cpu", selection=selection))
    task = _CurveTask()
    record = next(run_trajectory(config, task=task)).record
    if selection == "best_val":
        best = _first_argmax(VAL)
        assert (record.metric, record.metrics["val_top1"], record.metrics["best_epoch"]) == (TEST[best], VAL[best], best + 1)
    else:  # today's metric: the test score after the last epoch, and no evaluation during training
        assert record.metric == TEST[-1] and "val_top1" not in record.metrics and "best_epoch" not in record.metrics
        assert (task.test_calls, task.val_calls) == (1, 0)


def test_selection_defaults_by_task_and_bad_values_are_refused_naming_the_field():
    cifar = ImpConfig.from_dict(dict(model="resnet50", task="cifar10", rewind="init"))
    assert (cifar.selection, cifar.val_images) == ("best_val", 5000)
    assert ImpConfig.from_dict(dict(task="svhn", rewind="init")).val_images == 5000
    digits = ImpConfig.from_dict(dict(task="digits", rewind="init"))
    assert (digits.selection, digits.val_images) == ("last", None)
    assert len(build_task("digits", val_images=digits.val_images).train_set) == 1437  # 'last' splits nothing off
    with pytest.raises(ValueError, match=r"selection='best'.*best_val"):
        ImpConfig.from_dict(dict(task="digits", rewind="init", selection="best"))
    with pytest.raises(ValueError, match=r"selection='best_val'.*'segmentation_shapes' has none"):
        ImpConfig.from_dict(dict(task="segmentation_shapes", rewind="init", image_size=32, selection="best_val"))
    with pytest.raises(ValueError, match=r"val_images=100 .*selection='last'"):
        ImpConfig.from_dict(dict(task="digits", rewind="init", val_images=100))
    with pytest.raises(ValueError, match=r"val_images=1437 leaves nothing to train on"):
        ImpConfig.from_dict(dict(task="digits", rewind="init", selection="best_val", val_images=1437))
    with pytest.raises(ValueError, match=r"val_images must be a positive"):
        ImpConfig.from_dict(dict(task="digits", rewind="init", selection="best_val", val_images=0))
