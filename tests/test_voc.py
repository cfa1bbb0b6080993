"""The Pascal VOC readers on a tiny VOCdevkit written here (JPEG, XML, palette PNG): boxes move
from VOC's 1-based inclusive pixels to 0-based corners, difficult objects are ignored, void stays 255."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from ray_lth.tasks import DatasetMissingError, build_task
from ray_lth.tasks.detection.voc import voc_detection
from ray_lth.tasks.segmentation.voc import voc_segmentation

XML = """<annotation><filename>{name}.jpg</filename><size><width>40</width><height>30</height><depth>3</depth></size>
<object><name>dog</name><difficult>0</difficult><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>20</xmax><ymax>15</ymax></bndbox></object>
<object><name>person</name><difficult>1</difficult><bndbox><xmin>21</xmin><ymin>5</ymin><xmax>40</xmax><ymax>30</ymax></bndbox></object>
</annotation>"""


def _devkit(root):
    for year, main_sets, segmentation_sets in (("2007", ("trainval", "test"), ()),
                                               ("2012", ("trainval",), ("train", "val"))):
        base = root / "VOCdevkit" / f"VOC{year}"
        for folder in ("JPEGImages", "Annotations", "SegmentationClass", "ImageSets/Main", "ImageSets/Segmentation"):
            (base / folder).mkdir(parents=True)
        names = [f"{year}_{i}" for i in range(2)]
        for name in names:
            Image.fromarray(np.full((30, 40, 3), 120, np.uint8)).save(base / "JPEGImages" / f"{name}.jpg")
            (base / "Annotations" / f"{name}.xml").write_text(XML.format(name=name))
            labels = np.zeros((30, 40), np.uint8)
            labels[2:15, 0:20] = 12  # dog
            labels[15, :] = 255  # an object border
            mask = Image.fromarray(labels, mode="P")
            mask.putpalette([0, 0, 0] * 256)
            mask.save(base / "SegmentationClass" / f"{name}.png")
        for image_set in main_sets:
            (base / "ImageSets/Main" / f"{image_set}.txt").write_text("\n".join(names) + "\n")
        for image_set in segmentation_sets:
            (base / "ImageSets/Segmentation" / f"{image_set}.txt").write_text("\n".join(names) + "\n")


def test_voc_detection_reads_07_12_trainval_and_07_test(tmp_path):
    _devkit(tmp_path)
    test = voc_detection(tmp_path, train=False)
    image, target = test[0]
    assert len(test) == 2 and image.shape == (3, 30, 40) and 0 <= image.min() and image.max() <= 1
    assert target["boxes"].tolist() == [[0, 1, 20, 15], [20, 4, 40, 30]]
    assert target["labels"].tolist() == [12, 15] and target["ignore"].tolist() == [False, True]
    train = voc_detection(tmp_path, train=True)
    assert len(train) == 4  # VOC2007 trainval + VOC2012 trainval
    _, target = train[0]
    assert target["labels"].tolist() == [12] and "ignore" not in target  # difficult left out of training


def test_voc_segmentation_keeps_void_and_native_labels_for_evaluation(tmp_path):
    _devkit(tmp_path)
    image, labels = voc_segmentation(tmp_path, train=False, crop_size=60)[0]
    assert image.shape == (3, 60, 80) and labels.shape == (30, 40) and labels.dtype == torch.int64
    native = np.array(Image.open(tmp_path / "VOCdevkit/VOC2012/SegmentationClass/2012_0.png"))
    assert np.array_equal(labels.numpy(), native)
    image, labels = voc_segmentation(tmp_path, train=True, crop_size=16)[0]
    assert image.shape == (3, 16, 16) and set(labels.unique().tolist()) <= {0, 12, 255}


def test_voc_tasks_build_from_data_root_and_name_a_missing_devkit(tmp_path):
    with pytest.raises(DatasetMissingError, match=r"VOC2007 trainval.*VOCdevkit/VOC2007/"):
        build_task("voc_detection", data_root=str(tmp_path), image_size=600)
    _devkit(tmp_path)
    assert build_task("voc_detection", data_root=str(tmp_path), image_size=600).num_classes == 20
    assert build_task("voc_segmentation", data_root=str(tmp_path), image_size=513).num_classes == 21


class _LinearLogits(nn.Module):
    """Logits linear in the pixel centres' relative position (u, v) in [0, 1]: dog (12) where
    u + v < 0.9, person (15) towards the right edge, else background. Bilinear resampling keeps a
    linear function exact, so the prediction at any resolution follows from (u, v) alone."""

    def forward(self, images):
        height, width = images.shape[-2:]
        v = ((torch.arange(height) + 0.5) / height)[:, None]
        u = ((torch.arange(width) + 0.5) / width)[None, :]
        logits = torch.full((len(images), 21, height, width), -10.0)
        logits[:, 0] = 0.0
        logits[:, 12] = 0.9 - u - v
        logits[:, 15] = 4 * (u - 0.8)
        return logits


def test_voc_segmentation_is_scored_at_native_resolution(tmp_path):
    _devkit(tmp_path)
    task = build_task("voc_segmentation", data_root=str(tmp_path), image_size=128)  # the network sees 128 x 170
    scores = task.evaluate(_LinearLogits(), torch.device("cpu"))
    # reference: the prediction on the native 30 x 40 grid, per-class IoU over the non-void pixels
    v, u = np.meshgrid((np.arange(30) + 0.5) / 30, (np.arange(40) + 0.5) / 40, indexing="ij")
    scores_by_class = np.stack([np.zeros_like(u), 0.9 - u - v, 4 * (u - 0.8)])
    predicted = np.array([0, 12, 15])[scores_by_class.argmax(0)]
    native = np.array(Image.open(tmp_path / "VOCdevkit/VOC2012/SegmentationClass/2012_0.png"))
    valid = native != 255
    ious = []
    for c in range(21):
        union = ((predicted == c) | (native == c)) & valid
        if union.any():
            ious.append((((predicted == c) & (native == c)) & valid).sum() / union.sum())
    assert len(ious) == 3  # background, dog, and person (predicted only: IoU 0)
    assert scores["mIoU"] == pytest.approx(np.mean(ious), abs=1e-12)  # both val images are alike
    assert scores["pixel_accuracy"] == pytest.approx((predicted == native)[valid].mean(), abs=1e-12)
