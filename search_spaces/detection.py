"""Tickets on detection (paper, section 4, Figures 4-5 and Appendix B), embedded: IMP on the
pre-training task (generated shapes, from the shapes-pre-trained resnet20 θ_p) gives m_P; its masks
at rounds 2, 4, 6 (36.00, 59.04, 73.79 % sparsity) are fine-tuned with θ_p as Faster R-CNN
backbones on scenes of shapes (48 px, COCO-style AP), each as soon as it exists, next to the dense
fine-tune; and IMP runs on the detection task itself, (m_det, θ_p), for Figure 5. 3 seeds.
Each trial takes 2 CPUs (detection rounds are heavy); on a GPU give `--gpus-per-trial 0.5`.
`--set detector=retinanet` (one-stage, standing in for YOLOv4) or `detector=detectron2` (needs
detectron2 and model=resnet50). Pascal VOC07+12: edit `downstream` to `voc_detection` (with
`image_size=600`, its `voc_detection` or `voc_faster_rcnn` schedule) and pass --data-root."""

from ray_lth.transfer import TransferSpace


def space() -> TransferSpace:
    return TransferSpace(
        description=__doc__,
        upstream=dict(model="resnet20", task="shapes", rewind="pretrained", schedule="embedded", epochs=2),
        downstream={"detection_shapes": dict(image_size=48, detector="faster_rcnn", scenes_train=256)},
        rounds=[2, 4, 6],
        seeds=[0, 1, 2],
        task_specific=["pretrained"],
        cpus_per_trial=2,
    )
