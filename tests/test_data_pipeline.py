"""The data pipeline for real data (issue 14, item 5): uint8 images out of the loader, normalised
where the model runs, bit-identical on the CPU to the former per-image pipeline; loader workers,
pinned memory and persistent workers sized from the trial's CPUs on a GPU."""

import torch
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from paper_files import write_cifar10
from ray_lth.models import build_model
from ray_lth.tasks import Loading, build_task, task_loading
from ray_lth.tasks.cifar_files import CifarBatches
from ray_lth.tasks.classification import ClassificationTask
from ray_lth.tasks.datasets import CIFAR10_STATS
from ray_lth.tasks.loading import loading_for
from ray_lth.train import TrainHparams, train_masked

CPU = torch.device("cpu")


def _former_pipeline(root, train):
    """CIFAR-10 as it was loaded before: crop, flip, ToDtype and Normalize per image, in the loader."""
    steps = [v2.ToImage()] + ([v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip()] if train else [])
    transform = v2.Compose(steps + [v2.ToDtype(torch.float32, scale=True), v2.Normalize(*CIFAR10_STATS)])
    return CifarBatches("cifar10", root, train, transform)


def test_cpu_batches_and_training_are_bit_identical_to_the_former_per_image_pipeline(tmp_path):
    root = write_cifar10(tmp_path, n_train=60, n_test=30)
    task = build_task("cifar10", str(root), image_size=32)
    former = ClassificationTask("cifar10", _former_pipeline(root, True), _former_pipeline(root, False), 10)

    torch.manual_seed(3)  # the augmentation draws from the global RNG, the order from the generator
    now = [(task.model_inputs(x, CPU), y) for x, y in task.train_batches(16, torch.Generator().manual_seed(1))]
    torch.manual_seed(3)
    before = list(former.train_batches(16, torch.Generator().manual_seed(1)))
    assert len(now) == len(before) == 4
    for (x, y), (x0, y0) in zip(now, before):
        assert x.dtype == torch.float32 and torch.equal(x, x0) and torch.equal(y, y0)

    hparams = TrainHparams(epochs=2, batch_size=16, lr=0.05)
    models = []
    for t in (task, former):
        torch.manual_seed(0)
        model = build_model("resnet8", 10)
        torch.manual_seed(5)
        stats = train_masked(model, t, hparams, {}, CPU, torch.Generator().manual_seed(2))
        models.append((model, stats, t.evaluate(model, CPU)))
    (model, stats, scores), (model0, stats0, scores0) = models
    assert stats == stats0 and scores == scores0
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), model0.state_dict().values()))


def test_loader_workers_pinning_and_persistence_follow_the_device_and_the_trials_cpus():
    gpu = torch.device("cuda")  # only its type is read: no GPU needed
    assert loading_for(None, CPU, 8, reads_files=True) == Loading(0)  # the CPU: batches in the training process
    assert loading_for(2, CPU, 8, reads_files=True) == Loading(2)  # a count the config gives is kept
    assert loading_for(None, gpu, 4, reads_files=True) == Loading(3, pin_memory=True, persistent_workers=True)
    assert loading_for(None, gpu, 1, reads_files=True) == Loading(1, pin_memory=True, persistent_workers=True)
    assert loading_for(None, gpu, 2.5, reads_files=True).num_workers == 1
    assert loading_for(None, gpu, 4, reads_files=False) == Loading(0)  # embedded tensors: no workers
    assert loading_for(0, gpu, 4, reads_files=True) == Loading(0)
    assert task_loading("cifar10", {}, None, gpu, 6).num_workers == 5
    assert task_loading("digits", {}, None, gpu, 6).num_workers == 0
    assert task_loading("simclr", {"dataset": "cifar10"}, None, gpu, 6).num_workers == 5
    assert task_loading("simclr", {}, None, gpu, 6).num_workers == 0  # its default set is embedded


def test_persistent_workers_keep_one_loader_per_round(tmp_path):
    root = write_cifar10(tmp_path, n_train=20, n_test=10)
    task = build_task("cifar10", str(root), image_size=32, loading=Loading(1, persistent_workers=True))
    generator = torch.Generator().manual_seed(0)
    first = task.train_batches(8, generator)
    assert isinstance(first, DataLoader) and first.persistent_workers
    epochs = [sorted(int(y) for _, batch in [b for b in first] for y in batch) for _ in range(2)]
    assert task.train_batches(8, generator) is first  # the next epoch: the same workers
    assert epochs[0] == epochs[1] and len(epochs[0]) == 20
    assert task.train_batches(8, torch.Generator().manual_seed(1)) is not first  # the next round: its own
