"""Two augmented views of every image, the input of simCLR and MoCo v2, reproducible from a seed.

torchvision's v2 transforms draw from the global torch RNG, so each image's pair of views is made
inside ``torch.random.fork_rng`` seeded by (epoch seed, image index): the views depend on neither
the batch order nor the number of DataLoader workers, and the caller's RNG is left untouched. The
epoch seed and the image order come from the generator IMP passes to ``train_batches``.
"""

from typing import Iterator, List, Optional, Sequence, Tuple

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset
from torchvision.transforms import v2

from ..loading import Loading

# colour-jitter strength (brightness, contrast, saturation, hue), the smallest crop area and
# whether views are blurred: simCLR (Chen et al. 2020, appendix A) s=1 -> (0.8, 0.8, 0.8, 0.2),
# crops down to 8 %, blur; the paper's simCLR code (SimCLR/args.py, dataloader_setup) the same
# without the blur; MoCo v2 (Chen et al. 2020b, the paper's MoCo code with --aug-plus) jitters
# (0.4, 0.4, 0.4, 0.1), crops down to 20 %, blurs
RECIPES = {
    "authors_simclr": {"jitter": (0.8, 0.8, 0.8, 0.2), "min_scale": 0.08, "blur": False},
    "simclr": {"jitter": (0.8, 0.8, 0.8, 0.2), "min_scale": 0.08, "blur": True},
    "moco": {"jitter": (0.4, 0.4, 0.4, 0.1), "min_scale": 0.2, "blur": True},
}


def contrastive_augmentation(recipe: str, image_size: int, mean: Optional[Sequence[float]],
                             std: Optional[Sequence[float]]) -> v2.Compose:
    """Random resized crop, horizontal flip, colour jitter (p=0.8), grayscale (p=0.2); Gaussian
    blur (p=0.5) where the recipe blurs, and only at ImageNet-like sizes, as simCLR drops it for
    small images; then scale to float and normalise (``mean`` None: no normalisation)."""
    if recipe not in RECIPES:
        raise ValueError(f"augmentation={recipe!r} is not allowed; choose one of {sorted(RECIPES)}")
    settings = RECIPES[recipe]
    # at embedded sizes 8 % of a 16-px image is a 4-px blob that no encoder can match to its
    # other view: small images keep at least a fifth of their area
    min_scale = settings["min_scale"] if image_size >= 64 else max(settings["min_scale"], 0.2)
    steps = [
        v2.RandomResizedCrop(image_size, scale=(min_scale, 1.0), antialias=True),
        v2.RandomHorizontalFlip(),
        v2.RandomApply([v2.ColorJitter(*settings["jitter"])], p=0.8),
        v2.RandomGrayscale(p=0.2),
    ]
    if settings["blur"] and image_size >= 64:
        kernel = 2 * (image_size // 20) + 1  # about 10 % of the side, odd (simCLR)
        steps.append(v2.RandomApply([v2.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=0.5))
    steps.append(v2.ToDtype(torch.float32, scale=True))
    if mean is not None:
        steps.append(v2.Normalize(list(mean), list(std)))
    return v2.Compose(steps)


def view_seed(epoch_seed: int, index: int) -> int:
    return (epoch_seed * 1_000_003 + index) % (2**63 - 1)


class ViewPairs(Dataset):
    """``images[i]`` (a tensor image, uint8 or float in [0, 1]) as two augmented views; indexed
    by ``(i, epoch_seed)``, so the same key always gives the same views."""

    def __init__(self, images: Dataset, augment: v2.Compose):
        self.images = images
        self.augment = augment

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: Tuple[int, int]) -> Tuple[torch.Tensor, torch.Tensor]:
        index, epoch_seed = key
        image = self.images[index]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(view_seed(epoch_seed, index))
            return self.augment(image), self.augment(image)


class _Keys(torch.utils.data.Sampler):
    """The (index, epoch seed) keys of one epoch, in a fixed order."""

    def __init__(self, order: List[int], epoch_seed: int):
        self.order, self.epoch_seed = order, epoch_seed

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        return ((i, self.epoch_seed) for i in self.order)

    def __len__(self) -> int:
        return len(self.order)


def training_batches_per_epoch(size: int, batch_size: int) -> int:
    # a short last batch has few negatives, so it is dropped (as simCLR and MoCo do); a set
    # smaller than one batch still gives one batch
    return max(size // batch_size, 1)


def training_view_batches(pairs: ViewPairs, batch_size: int, generator: torch.Generator,
                          loading: Loading = Loading(), shard=None) -> DataLoader:
    """One shuffled epoch of (view_a, view_b) batches; order and views come from ``generator``.
    ``shard`` (a data-parallel rank's) keeps the rank's share of each batch."""
    epoch_seed = int(torch.randint(2**62, (), generator=generator))
    order = torch.randperm(len(pairs), generator=generator).tolist()
    drop_last = len(pairs) >= batch_size
    sampler = BatchSampler(_Keys(order, epoch_seed), batch_size, drop_last=drop_last)
    if shard is not None:
        sampler = shard(sampler)
    # the loader's own generator: otherwise it draws its worker seed from the global RNG
    return DataLoader(pairs, batch_sampler=sampler, generator=torch.Generator().manual_seed(epoch_seed),
                      **loading.options(reused=False))


EVALUATION_SEED = 0  # evaluation views are the same in every round and every trial


def evaluation_view_batches(pairs: ViewPairs, batch_size: int, loading: Loading = Loading()) -> DataLoader:
    """The test images in their stored order, in consecutive batches (the last may be shorter),
    each with a fixed pair of views."""
    sampler = BatchSampler(_Keys(list(range(len(pairs))), EVALUATION_SEED), batch_size, drop_last=False)
    return DataLoader(pairs, batch_sampler=sampler, generator=torch.Generator().manual_seed(EVALUATION_SEED),
                      **loading.options(reused=False))
