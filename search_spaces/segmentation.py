"""Tickets on semantic segmentation (paper, section 4, Figures 4-5), embedded: IMP on the
pre-training task (generated shapes, from the shapes-pre-trained resnet20 θ_p) gives m_P; its masks
at rounds 2, 4, 6, 8 (36.00 to 83.22 % sparsity) are fine-tuned with θ_p as DeepLabv3+ encoders on
scenes of shapes (48 px, 5 classes, mIoU), each as soon as it exists, next to the dense fine-tune;
and IMP runs on the segmentation task itself, (m_seg, θ_p), for Figure 5. 3 seeds, 2 CPUs a trial
(`--gpus-per-trial 0.5` on a GPU). `--set segmenter=deeplabv3` drops the v3+ decoder. Pascal VOC
2012: edit `downstream` to `voc_segmentation` (`image_size=513`, schedule `voc_segmentation`: the
authors' poly 0.9 over 30K iterations with the backbone at 0.1x the head's lr 0.01, no warm-up;
Table 1's row is `voc_segmentation_table1`) and pass --data-root. The embedded fine-tunes train in
the same shape (`embedded_segmentation`)."""

from ray_lth.transfer import TransferSpace


def space() -> TransferSpace:
    return TransferSpace(
        description=__doc__,
        upstream=dict(model="resnet20", task="shapes", rewind="pretrained", schedule="embedded", epochs=2),
        downstream={"segmentation_shapes": dict(image_size=48, segmenter="deeplabv3plus", scenes_train=256)},
        rounds=[2, 4, 6, 8],
        seeds=[0, 1, 2],
        task_specific=["pretrained"],
        cpus_per_trial=2,
    )
