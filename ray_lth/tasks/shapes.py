"""A procedural "shapes" image set: coloured shapes on noisy backgrounds, generated from a seed.

It needs no files and no download, so the embedded default and the tests can pre-train and
prune in minutes on a CPU. ``render_shape`` gives the exact pixel mask of each shape, which the
detection and segmentation stand-ins reuse for boxes and masks.
"""

import numpy as np

SHAPE_NAMES = ("circle", "square", "triangle", "cross", "ring", "diamond", "hbar", "vbar")


def render_shape(kind: int, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
    """Boolean mask of shape ``kind`` with radius ``r`` on offsets (dx, dy) from its centre."""
    ax, ay = np.abs(dx), np.abs(dy)
    if kind == 0:
        return dx**2 + dy**2 <= r**2
    if kind == 1:
        return np.maximum(ax, ay) <= 0.8 * r
    if kind == 2:  # isosceles triangle pointing up
        return (dy <= 0.8 * r) & (ax <= (dy + r) / 2)
    if kind == 3:
        return ((ax <= r / 4) & (ay <= r)) | ((ay <= r / 4) & (ax <= r))
    if kind == 4:
        d2 = dx**2 + dy**2
        return (d2 <= r**2) & (d2 >= (0.55 * r) ** 2)
    if kind == 5:
        return ax + ay <= r
    if kind == 6:
        return (ay <= r / 3) & (ax <= r)
    if kind == 7:
        return (ax <= r / 3) & (ay <= r)
    raise ValueError(f"shape kind must be in 0..{len(SHAPE_NAMES) - 1}, got {kind}")


def make_shapes(n: int, image_size: int = 16, seed: int = 0, num_classes: int = len(SHAPE_NAMES)):
    """``n`` images (n, 3, H, W) float32 in [0, 1] and their labels (n,) int64: one shape each."""
    if not 1 <= num_classes <= len(SHAPE_NAMES):
        raise ValueError(f"num_classes must be in 1..{len(SHAPE_NAMES)}, got {num_classes}")
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, size=n)

    def paint(rng):  # a dark background, a bright shape
        return rng.uniform(0.0, 0.4, size=(3, 1, 1)), rng.uniform(0.5, 1.0, size=(3, 1, 1))

    return _draw(labels, image_size, rng, (0.35, 0.65), paint, noise=0.08), labels.astype(np.int64)


def make_camouflaged_shapes(n: int, image_size: int = 16, seed: int = 0, contrast: float = 0.3, noise: float = 0.1):
    """``n`` images of the same 8 shapes as ``make_shapes``, but camouflaged: a random background
    colour, the shape only ``contrast``..2·``contrast`` away from it per channel (lighter or
    darker), radius 0.25..0.4 of the image, Gaussian noise. Harder than the shapes θ_p was
    pre-trained on (its features help but do not solve it), so a sparse network runs out of
    capacity within the embedded default's sparsity grid."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(SHAPE_NAMES), size=n)

    def paint(rng):  # any background, the shape a little lighter or darker per channel
        background = rng.uniform(0.0, 1.0, size=(3, 1, 1))
        offset = rng.choice([-1, 1], size=(3, 1, 1)) * rng.uniform(contrast, 2 * contrast, size=(3, 1, 1))
        return background, np.clip(background + offset, 0.0, 1.0)

    return _draw(labels, image_size, rng, (0.3, 0.7), paint, noise), labels.astype(np.int64)


def _draw(labels, image_size: int, rng, centre: tuple, paint, noise: float) -> np.ndarray:
    """One image per label: its shape (radius 0.25..0.4 of the image, centred within ``centre``),
    coloured by ``paint(rng) -> (background, foreground)``, plus Gaussian noise; draws in that order."""
    ys, xs = np.mgrid[0:image_size, 0:image_size].astype(np.float32) + 0.5
    images = np.empty((len(labels), 3, image_size, image_size), dtype=np.float32)
    for i, kind in enumerate(labels):
        r = rng.uniform(0.25, 0.4) * image_size
        cx, cy = rng.uniform(*centre, size=2) * image_size
        inside = render_shape(int(kind), xs - cx, ys - cy, r)
        background, foreground = paint(rng)
        image = np.where(inside[None], foreground, background)
        images[i] = np.clip(image + rng.normal(0.0, noise, size=image.shape), 0.0, 1.0)
    return images


def make_gratings(n: int, image_size: int = 16, seed: int = 0, num_classes: int = 10):
    """``n`` sinusoidal gratings (n, 3, H, W) in [0, 1] whose label is the orientation (one of
    ``num_classes`` angles in [0, π)), with random frequency, phase, colour and noise: a
    low-level-texture task unlike the shapes, for transfer."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, size=n)
    ys, xs = np.mgrid[0:image_size, 0:image_size].astype(np.float32) / image_size
    images = np.empty((n, 3, image_size, image_size), dtype=np.float32)
    for i, label in enumerate(labels):
        angle = np.pi * label / num_classes + rng.normal(0.0, 0.08)
        frequency = rng.uniform(2.0, 4.0)
        wave = np.sin(2 * np.pi * frequency * (xs * np.cos(angle) + ys * np.sin(angle)) + rng.uniform(0, 2 * np.pi))
        colour = rng.uniform(0.3, 1.0, size=(3, 1, 1))
        image = 0.5 + 0.5 * wave[None] * colour
        images[i] = np.clip(image + rng.normal(0.0, 0.45, size=image.shape), 0.0, 1.0)
    return images, labels.astype(np.int64)
