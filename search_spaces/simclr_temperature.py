"""Table 2: the simCLR temperature used to find a ticket, and its transfer. From the simCLR ticket
at 67.23 % sparsity, one simCLR round from θ_p at each temperature in {0.1, 0.2, 0.5, 1, 2, 10, 20}
(a grid, one trial each), global pruning to 73.79 %, then fine-tuning (m, θ_p) downstream.
Embedded: the ticket is derived first by IMP on simCLR to round 5 (the pretrain_simclr settings,
seed 0; cached), downstream is digits; half a CPU per trial. Give a ticket with
--set mask_file=<experiment>/<trial>/trajectory/mask_round_05.rlthmask; fractional GPUs with
--gpus-per-trial 0.25 (four trials share a GPU). Paper scale: --weights <θ_sim> --data-root DIR
--set mask_file=... --set model=resnet50 --set dataset=imagenet --set image_size=224
--set schedule=simclr --set normalize=none --set downstream_task=cifar100
--set downstream_schedule=cifar100 --set downstream_image_size=32.
The simCLR rounds use the authors' loss (loss=authors, SimCLR/utils.py): their code has no
temperature flag, so Table 2's runs can only have changed t in that same nt_xent."""

from ray_lth.ablation import TABLE2_TEMPERATURES, TemperatureAblationSpace


def space() -> TemperatureAblationSpace:
    return TemperatureAblationSpace(
        description=__doc__,
        upstream=dict(model="resnet20", schedule="simclr_embedded", train_images=2048, eval_images=512,
                      loss="authors"),
        downstream=dict(task="digits", schedule="embedded"),
        temperatures=list(TABLE2_TEMPERATURES),
        seeds=[0],
        weights="embedded",
        cpus_per_trial=0.5,
        gpus_per_trial=0.0,
    )
