"""Pascal VOC from ``--data-root`` through torchvision's VOC datasets (never downloaded): the
class names and the opening of one part, shared by ``detection/voc.py`` and ``segmentation/voc.py``.
"""

from pathlib import Path

from .datasets import DatasetMissingError

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
               "train", "tvmonitor")


def open_voc_part(build, root: Path, year: str, image_set: str, what: str):
    try:
        return build(str(root), year=year, image_set=image_set, download=False)
    except (RuntimeError, FileNotFoundError, OSError) as error:
        raise DatasetMissingError(
            f"Pascal VOC{year} {image_set} ({what}) not found under --data-root {root}: expected "
            f"VOCdevkit/VOC{year}/ with JPEGImages/, Annotations/, SegmentationClass/ and ImageSets/ "
            f"(ray_lth never downloads data). Cause: {error}") from None
