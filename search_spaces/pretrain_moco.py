"""IMP on the MoCo v2 pre-training task (paper, Figure 2): rounds train the pruned query encoder
against a queue of keys from its moving average (temperature 0.2), prune 20 % of the remaining
weights, and report the authors' (K+1)-way contrastive top-1 (query encoder on one view against
the key encoder on the other and an evaluation queue of K keys); Eq. (2) within batches of the
query encoder's projections: --set eval_metric=retrieval_top1. Embedded: resnet20 pre-trained on
generated shapes (θ_p), MoCo on natural-image patches at 16 px with a 1024-key queue and key
momentum 0.99 (few steps a round), 5 rounds, 3 seeds, every round run.
Paper scale, from local files: --weights <θ_MoCo, moco_v2_800ep_pretrain.pth.tar>
--data-root <dir with imagenet/train, imagenet/val> --set model=resnet50 --set dataset=imagenet
--set image_size=224 --set schedule=moco --set queue_size=65536 --set key_momentum=0.999
--set rounds=18 --gpus-per-trial 1.
A MoCo v2 file (detected by its module.encoder_q.* keys under the default weights_format=auto) is
θ_p trained on this very task, so round 0 scores it untrained and the first mask prunes its own
magnitudes, as the authors' main_moco_imp.py; --set train_dense=True trains a dense round 0 first.
The embedded θ_p (torchvision format, pre-trained on shapes classification) trains round 0."""

from ray_lth.spaces import SweepSpace


def space() -> SweepSpace:
    return SweepSpace(
        description=__doc__,
        fixed=dict(model="resnet20", task="moco", rewind="pretrained", schedule="moco_embedded", rounds=5,
                   train_images=2048, eval_images=512, queue_size=1024, key_momentum=0.99),
        grid=dict(seed=[0, 1, 2]),
        weights="embedded",
        patience=None,  # every round runs: the whole curve is the result
    )
