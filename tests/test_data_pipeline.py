"""The data pipeline for real data (issue 14, item 5): uint8 images out of the loader, normalised
where the model runs, bit-identical on the CPU to the former per-image pipeline; loader workers,
pinned memory and persistent workers sized from the trial's CPUs on a GPU. The embedded sets'
batches, gathered whole from the tensors in memory, bit-identical to stacking them item by item."""

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, TensorDataset
from torchvision.transforms import v2

from paper_files import write_cifar10
from ray_lth.distributed import ShardedBatches
from ray_lth.models import build_model
from ray_lth.tasks import Loading, build_task, task_loading
from ray_lth.tasks.cifar_files import CifarBatches
from ray_lth.tasks.classification import ClassificationTask
from ray_lth.tasks.datasets import CIFAR10_STATS
from ray_lth.tasks.loading import loading_for
from ray_lth.tasks.validation_split import split_validation
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


class _ItemByItem(Dataset):
    """A dataset of tensors read one item at a time: how the embedded sets were batched before
    their loaders gathered whole batches (DataLoader stacks the items)."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        return self.dataset[index]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_embedded_batches_are_gathered_whole_with_the_same_draws_and_bits_as_stacked_items():
    images, labels = torch.randn(90, 3, 8, 8, generator=_gen(0)), torch.randint(0, 4, (90,), generator=_gen(1))
    train_set, val_set = split_validation(TensorDataset(images[:70], labels[:70]), None, 14)  # Subsets
    test_set = TensorDataset(images[70:], labels[70:])
    task = ClassificationTask("t", train_set, test_set, 4, val_set=val_set)
    former = ClassificationTask("t", _ItemByItem(train_set), _ItemByItem(test_set), 4, val_set=_ItemByItem(val_set))

    generator, reference = _gen(2), _gen(2)
    assert task.train_batches(16, generator).batch_size is None  # indexed by whole batches
    for _ in range(2):  # each epoch draws the loader's seed, then the order, from the generator
        now = list(task.train_batches(16, generator))
        before = list(DataLoader(train_set, batch_size=16, shuffle=True, generator=reference))
        assert [len(y) for _, y in now] == [16, 16, 16, 8]
        assert all(torch.equal(x, x0) and torch.equal(y, y0) for (x, y), (x0, y0) in zip(now, before))
    assert torch.equal(generator.get_state(), reference.get_state())

    generator, reference = _gen(3), _gen(3)
    shard = lambda batches: ShardedBatches(batches, 1, 2)  # noqa: E731
    now = list(task.train_batches(16, generator, shard=shard))
    before = DataLoader(train_set, generator=reference,
                        batch_sampler=shard(BatchSampler(RandomSampler(train_set, generator=reference), 16, False)))
    assert all(torch.equal(x, x0) and torch.equal(y, y0) for (x, y), (x0, y0) in zip(now, before))

    hparams = TrainHparams(epochs=2, batch_size=16, lr=0.05)
    outcomes = []
    for t in (task, former):
        torch.manual_seed(0)
        model = build_model("resnet8", 4)
        stats = train_masked(model, t, hparams, {}, CPU, _gen(4))
        scores = (t.evaluate(model, CPU, batch_size=8), t.evaluate_validation(model, CPU, batch_size=8))
        # each evaluation's loader drew its seed from the global RNG, as before
        outcomes.append((model.state_dict(), stats, scores, torch.get_rng_state()))
    (state, stats, scores, rng), (state0, stats0, scores0, rng0) = outcomes
    assert stats == stats0 and scores == scores0 and torch.equal(rng, rng0)
    assert all(torch.equal(state[k], state0[k]) for k in state0)
