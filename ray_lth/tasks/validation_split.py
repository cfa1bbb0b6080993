"""A validation set held out of a classification task's training images (for ``selection='best_val'``).

The authors (``dataset.py`` of CV_LTH_Pre-training) keep the last 5,000 training images of
CIFAR-10/100 (45k train / 5k val), SVHN (68,257 / 5,000) and Fashion-MNIST (55k / 5k) for
validation, seen through the *test* transform, and report the test accuracy of the epoch with
the best validation accuracy. So does this: the same images as theirs (on CIFAR, the second half
of ``data_batch_5``), fixed, independent of the trial seed, so every seed and round of a group
trains on the same images and validates on the same ones.
"""

import copy
from typing import Tuple

from torch.utils.data import Dataset, Subset, TensorDataset

# default validation size per classification dataset: the authors' 5,000 for their four 32-px
# sets (of 50,000 / 50,000 / 73,257 / 60,000); VisDA-2017 holds out 5,000 of its 152,397
# synthetic training images; the embedded sets about a tenth of their training images
VAL_IMAGES = {"cifar10": 5000, "cifar100": 5000, "svhn": 5000, "fashion_mnist": 5000, "visda2017": 5000,
              "shapes": 400, "camo_shapes": 400, "digits": 144, "gratings": 200}
# the training set sizes, so that a config can refuse a val_images that leaves nothing to train on
TRAIN_IMAGES = {"cifar10": 50000, "cifar100": 50000, "svhn": 73257, "fashion_mnist": 60000, "visda2017": 152397,
                "shapes": 4000, "camo_shapes": 4000, "digits": 1437, "gratings": 2000}


def split_validation(train_set: Dataset, test_set: Dataset, val_images: int) -> Tuple[Dataset, Dataset]:
    """(training part, validation part) of ``train_set``: its last ``val_images`` images go to
    validation, seen through ``test_set``'s transform (no augmentation); the rest stay for
    training, with the training transform."""
    if not 0 < val_images < len(train_set):
        raise ValueError(f"val_images must be in [1, {len(train_set) - 1}] (the training set has "
                         f"{len(train_set)} images), got {val_images}")
    cut = len(train_set) - val_images
    train_index, val_index = list(range(cut)), list(range(cut, len(train_set)))
    if isinstance(train_set, TensorDataset):  # embedded: tensors, no transform
        seen_as_test = train_set
    elif hasattr(train_set, "transform") and hasattr(test_set, "transform"):
        seen_as_test = copy.copy(train_set)  # a torchvision dataset: the same images, the test transform
        seen_as_test.transform = test_set.transform
    else:
        raise ValueError(f"cannot hold out validation images of a {type(train_set).__name__}: it has no "
                         f"`transform` to replace by the test set's")
    return Subset(train_set, train_index), Subset(seen_as_test, val_index)
