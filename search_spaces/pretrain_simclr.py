"""IMP on the simCLR pre-training task (paper, Figure 2): rounds train the pruned encoder with
the authors' simCLR loss (loss=authors: -log of the mean positive ratio, SimCLR/utils.py; the
standard NT-Xent is loss=nt_xent) from θ_p, prune 20 % of the remaining weights, and report the
contrastive top-1 of the authors' code on held-out images: the backbone's features (projection head dropped) ranked within
batches of 256, views from the training augmentation, which is theirs (no blur, no normalisation
with normalize=none). Eq. (2) on the projections, with Chen et al.'s blur: --set
eval_metric=retrieval_top1 --set eval_features=projection --set augmentation=simclr.
Embedded: resnet20 pre-trained on generated shapes (θ_p), simCLR on natural-image patches at
16 px, 5 rounds (to 67.23 %, the upstream mask of simclr_temperature), 3 seeds, every round run
(no early stop: the whole curve is the result).
Paper scale, from local files: --weights <θ_sim, simCLR checkpoint converted to PyTorch>
--data-root <dir with imagenet/train, imagenet/val> --set model=resnet50 --set dataset=imagenet
--set image_size=224 --set schedule=simclr --set normalize=none --set rounds=18 --gpus-per-trial 1.
schedule=simclr is the authors' SimCLR/args.py: LARS (η 1e-3), fixed lr 1e-4, wd 1e-6 (Table 1's
SGD with wd 1e-4: --set optimizer=sgd --set weight_decay=1e-4). A simCLR-format file (detected
under the default weights_format=auto) is θ_p trained on this very task, so round 0 scores θ_p
untrained and the first mask prunes its own magnitudes, as SimCLR/main.py prunes before training
(round 0 scores the backbone's features, so a converted file without a projection head is
scored as it is); --set
train_dense=True trains a dense round 0 first. The embedded θ_p (torchvision format, pre-trained
on shapes classification) trains round 0."""

from ray_lth.spaces import SweepSpace


def space() -> SweepSpace:
    return SweepSpace(
        description=__doc__,
        fixed=dict(model="resnet20", task="simclr", rewind="pretrained", schedule="simclr_embedded", rounds=5,
                   train_images=2048, eval_images=512, loss="authors"),
        grid=dict(seed=[0, 1, 2]),
        weights="embedded",
        patience=None,  # every round runs: the whole curve is the result
    )
