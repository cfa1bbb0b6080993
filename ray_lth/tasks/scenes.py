"""Procedural scenes of shapes with boxes and masks: the embedded stand-ins for Pascal VOC
detection and segmentation.

Each scene holds 1 to ``max_objects`` shapes (the classification set's shapes, drawn by the same
``render_shape``) on a noisy background; a later shape may cover an earlier one, and every box and
mask is that of the *visible* pixels. Generated from a seed: no files, no download.
"""

from dataclasses import dataclass
from typing import List

import numpy as np
import torch

from .shapes import SHAPE_NAMES, render_shape

MIN_VISIBLE_PIXELS = 12  # an object mostly hidden by later ones is dropped, as an annotator would


@dataclass
class Scene:
    image: np.ndarray  # (3, H, W) float32 in [0, 1]
    boxes: np.ndarray  # (K, 4) float32, x1 y1 x2 y2 in pixels (exclusive right/bottom edges)
    labels: np.ndarray  # (K,) int64 in 1..num_classes (0 is the background)
    masks: np.ndarray  # (K, H, W) bool, the visible pixels of each object
    semantic: np.ndarray  # (H, W) int64: 0 background, else the label of the visible object


def make_scenes(n: int, image_size: int = 48, seed: int = 0, num_classes: int = 4,
                max_objects: int = 3) -> List[Scene]:
    if not 1 <= num_classes <= len(SHAPE_NAMES):
        raise ValueError(f"num_classes must be in 1..{len(SHAPE_NAMES)}, got {num_classes}")
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:image_size, 0:image_size].astype(np.float32) + 0.5
    scenes = []
    for _ in range(n):
        image = np.broadcast_to(rng.uniform(0.0, 0.4, size=(3, 1, 1)), (3, image_size, image_size)).copy()
        owner = np.full((image_size, image_size), -1)  # which object each pixel shows
        kinds = rng.integers(0, num_classes, size=rng.integers(1, max_objects + 1))
        for index, kind in enumerate(kinds):
            r = rng.uniform(0.12, 0.25) * image_size
            cx, cy = rng.uniform(r, image_size - r, size=2)
            inside = render_shape(int(kind), xs - cx, ys - cy, r)
            image[:, inside] = rng.uniform(0.5, 1.0, size=(3, 1))
            owner[inside] = index
        image = np.clip(image + rng.normal(0.0, 0.08, size=image.shape), 0.0, 1.0).astype(np.float32)
        boxes, labels, masks = [], [], []
        for index, kind in enumerate(kinds):
            visible = owner == index
            if visible.sum() < MIN_VISIBLE_PIXELS:
                continue
            rows, cols = np.nonzero(visible)
            boxes.append([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1])
            labels.append(int(kind) + 1)
            masks.append(visible)
        semantic = np.zeros((image_size, image_size), dtype=np.int64)
        for label, mask in zip(labels, masks):
            semantic[mask] = label
        scenes.append(Scene(image, np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(labels, np.int64),
                            np.asarray(masks, bool).reshape(-1, image_size, image_size), semantic))
    return scenes


def check_scene_counts(options) -> None:
    """The scene-count options of the embedded detection and segmentation tasks."""
    for key in ("scenes_train", "scenes_test"):
        if key in options and not (isinstance(options[key], int) and options[key] >= 1):
            raise ValueError(f"{key} must be an integer >= 1, got {options[key]!r}")


class SceneDetection:
    """Scenes as a detection dataset: (image (3, H, W) in [0, 1], {"boxes", "labels"})."""

    def __init__(self, scenes: List[Scene]):
        self.items = [(torch.from_numpy(s.image), {"boxes": torch.from_numpy(s.boxes),
                                                    "labels": torch.from_numpy(s.labels)}) for s in scenes]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        return self.items[index]


class SceneSegmentation:
    """Scenes as a semantic segmentation dataset: (image (3, H, W) in [0, 1], labels (H, W))."""

    def __init__(self, scenes: List[Scene]):
        self.items = [(torch.from_numpy(s.image), torch.from_numpy(s.semantic)) for s in scenes]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        return self.items[index]
