"""IMP on supervised ImageNet classification, the pre-training task of θ_Img (paper, Figure 2):
m_Img. ResNet-50 from --weights (a torchvision-format state dict with its 1000-way fc, which is
this task's own head γ_p and is loaded and restored every round; the rest of the spaces keep a new
head), ImageNet from --data-root as `imagenet/train/<wnid>/*` and `imagenet/val/<wnid>/*`
(ImageFolder; as many class folders as the fc has outputs), RandomResizedCrop 224 + flip to train,
Resize 256 + CenterCrop 224 to evaluate, ImageNet mean/std; Table 1's ImageNet row (10 epochs a
round, batch 256, fixed lr 1e-4, momentum 0.9, wd 1e-4) as the authors' main_imp_imagenet.py;
rewinding to θ_p; 18 rounds (to 98.20 %); every round run. As the authors' code, round 0 does not
train: θ_p already is the dense network trained on ImageNet, so it is scored (its val top-1 is the
dense band) and pruned as it is; every later round reports its best epoch on ImageNet's val set
(`selection=best_test`: their `best_acc1`; the val set is ImageNet's only labelled held-out set). One seed by default (the authors ran
one; each round is 10 ImageNet epochs): `--set "seed=[0,1,2]"` for three.

The round masks feed the downstream spaces as transferred tickets (m_Img, θ_Img): e.g.
`--space paper_cifar --weights <θ_Img> --data-root DIR --set rounds=0 --set mask_file=
experiments/pretrain_imagenet/<trial>/trajectory/mask_round_KK.rlthmask --set mask_label=m_Img-rKK`
(resnet50's prunable weights are resnet50_cifar's, so the mask fits)."""

from ray_lth.spaces import SweepSpace


def space() -> SweepSpace:
    return SweepSpace(
        description=__doc__,
        fixed=dict(model="resnet50", task="imagenet", schedule="imagenet", rewind="pretrained", rounds=18,
                   image_size=224),
        grid=dict(seed=[0]),
        weights="required",
        cpus_per_trial=8,
        gpus_per_trial=1,
        patience=None,  # every round runs: the whole curve is the result (Figure 2), and every round's mask is a ticket
    )
