"""simCLR and MoCo v2 as IMP tasks: the wrapped trunk shares the backbone's parameters, views are
reproducible, MoCo's key encoder is an EMA of the masked query encoder, the queue rotates, and a
few embedded IMP rounds on each task report their metric above chance."""

import pytest
import torch

from ray_lth.config import ImpConfig
from ray_lth.imp import run_trajectory
from ray_lth.masks import ones_mask
from ray_lth.models import build_model, get_model_spec, prunable_parameters
from ray_lth.pruning import global_magnitude_prune
from ray_lth.rewind import apply_mask
from ray_lth.tasks import DatasetMissingError, build_task
from ray_lth.tasks.ssl.encoder import backbone_trunk
from ray_lth.tasks.ssl.images import EMBEDDED_STATS, load_images
from ray_lth.tasks.ssl.moco import MoCoModel
from ray_lth.train import schedule_for, train_masked

SMALL = dict(train_images=128, eval_images=128, retrieval_batch_size=64)


@pytest.mark.parametrize("name,size", [("resnet8", 16), ("resnet20", 16), ("convnet", 16), ("resnet18", 32)])
def test_trunk_then_head_is_the_backbone_and_shares_its_parameters(name, size):
    torch.manual_seed(0)
    spec = get_model_spec(name)
    backbone = build_model(name, 7).eval()
    keys_before = list(backbone.state_dict())
    trunk = backbone_trunk(backbone, spec)
    images = torch.randn(2, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(backbone.fc(trunk(images)), backbone(images))
    assert trunk(images).shape == (2, spec.feature_dim)
    backbone_params = {id(p) for p in backbone.parameters()}
    assert all(id(p) in backbone_params for p in trunk.parameters())
    assert list(backbone.state_dict()) == keys_before  # the backbone is not modified


def test_embedded_images_are_the_raw_images_of_the_classification_sets():
    from ray_lth.tasks.datasets import embedded_digits

    raw = load_images("digits", False, None, 16)  # test images: in a fixed shuffled order
    normalised, _ = embedded_digits(False, 16)
    mean, std = EMBEDDED_STATS
    index = raw.indices[3]  # load_images keeps a fixed order; Subset maps back to the original index
    torch.testing.assert_close((raw[3] - mean[0]) / std[0], normalised.tensors[0][index])


def test_views_are_reproducible_and_leave_the_global_rng_alone():
    task = build_task("simclr", dataset="digits", **SMALL)
    state = torch.get_rng_state()
    first = [b for b in task.train_batches(32, torch.Generator().manual_seed(5))]
    assert torch.equal(torch.get_rng_state(), state)
    second = [b for b in task.train_batches(32, torch.Generator().manual_seed(5))]
    other = [b for b in task.train_batches(32, torch.Generator().manual_seed(6))]
    assert len(first) == task.batches_per_epoch(32) == 4
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, second))
    assert not torch.equal(first[0][0], other[0][0])
    view_a, view_b = first[0]
    assert view_a.shape == (32, 3, 16, 16) and not torch.equal(view_a, view_b)  # two different views


def test_option_values_are_checked_with_the_field_named():
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        build_task("simclr", temperature=0)
    with pytest.raises(ValueError, match="queue_size must be an integer >= 1"):
        build_task("moco", queue_size=0)
    with pytest.raises(ValueError, match="key_momentum must be in"):
        build_task("moco", key_momentum=1.0)
    with pytest.raises(ValueError, match="dataset='mnist' is not allowed"):
        build_task("simclr", dataset="mnist")
    with pytest.raises(DatasetMissingError, match="pass --data-root"):
        build_task("moco", dataset="imagenet")
    config = ImpConfig.from_dict(dict(task="moco", rewind="init", temperature=0.3, queue_size=512))
    assert config.task_options["temperature"] == 0.3 and config.task_options["key_momentum"] == 0.999


def _masked_moco(queue_size=5, momentum=0.9):
    torch.manual_seed(0)
    spec = get_model_spec("resnet8")
    backbone = build_model("resnet8", 16)
    prunable = prunable_parameters(backbone, spec.never_pruned)
    mask = global_magnitude_prune({n: p.detach() for n, p in prunable.items()}, ones_mask(prunable), 0.5)
    apply_mask(backbone, mask)
    return backbone, mask, MoCoModel(backbone, spec, 16, queue_size, momentum, shuffle_bn_splits=2)


def test_key_encoder_starts_at_the_query_and_then_follows_its_moving_average():
    _, _, model = _masked_moco(momentum=0.9)
    # MoCo's initialisation: k = q (a separate copy, not trained by gradients)
    for q, k in zip(model.query.parameters(), model.key.parameters()):
        assert torch.equal(q, k) and q is not k and not k.requires_grad
    old_keys = [k.detach().clone() for k in model.key.parameters()]
    with torch.no_grad():
        for q in model.query.parameters():
            q.add_(torch.randn_like(q))
    model.update_key_encoder()
    for q, k, old in zip(model.query.parameters(), model.key.parameters(), old_keys):
        torch.testing.assert_close(k, 0.9 * old + 0.1 * q)


def test_queue_replaces_its_oldest_keys_and_wraps_around():
    _, _, model = _masked_moco(queue_size=5)
    first, second = torch.randn(3, 16), torch.randn(3, 16)
    initial = model.queue.clone()
    model.enqueue(first)
    unit = torch.nn.functional.normalize
    torch.testing.assert_close(model.queue[:3], unit(first, dim=1))
    torch.testing.assert_close(model.queue[3:], initial[3:])
    assert int(model.queue_pointer) == 3
    model.enqueue(second)  # slots 3, 4, then 0
    torch.testing.assert_close(model.queue[[3, 4, 0]], unit(second, dim=1))
    torch.testing.assert_close(model.queue[1:3], unit(first, dim=1)[1:])
    assert int(model.queue_pointer) == 1
    many = torch.randn(7, 16)  # more keys than slots: the newest five stay
    model.enqueue(many)
    assert sorted(model.queue.mul(1e4).round().tolist()) == sorted(unit(many[2:], dim=1).mul(1e4).round().tolist())


def test_shuffled_keys_come_back_in_the_original_order():
    _, _, model = _masked_moco()
    model.eval()  # running statistics: the grouping cannot change the result
    images = torch.randn(6, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model.keys(images, torch.tensor([4, 0, 5, 2, 1, 3])), model.key(images))


def test_training_keeps_pruned_weights_zero_in_both_encoders():
    backbone, mask, _ = _masked_moco()
    task = build_task("moco", dataset="digits", queue_size=64, key_momentum=0.5, **SMALL)
    model = task.wrap(backbone, get_model_spec("resnet8"))
    train_masked(model, task, schedule_for("embedded", epochs=1, batch_size=32, lr=0.1), mask, torch.device("cpu"),
                 torch.Generator().manual_seed(0), masked_module=backbone)
    key_params = dict(model.key.trunk.named_parameters())
    query_params = dict(model.query.trunk.named_parameters())
    moved = 0
    for name, keep in mask.items():
        weight = dict(backbone.named_parameters())[name]
        assert query_params[name] is weight  # the query trunk is the backbone
        assert (weight[~keep] == 0).all() and (key_params[name][~keep] == 0).all(), name
        moved += int((key_params[name][keep] != weight[keep]).any())
    assert moved > 0  # the key encoder lags the query: it really is a separate average


@pytest.mark.parametrize("task,extra,metric,chance", [
    ("simclr", {}, "contrastive", 1 / 128),  # the backbone's 2 x 64 features of a batch, each its own 0 included
    ("simclr", dict(eval_metric="retrieval_top1", eval_features="projection"), "retrieval", 1 / 127),
    ("moco", dict(queue_size=256, key_momentum=0.9), "contrastive", 1 / 257),  # (K+1)-way
    ("moco", dict(queue_size=256, key_momentum=0.9, eval_metric="retrieval_top1"), "retrieval", 1 / 127),
])
def test_embedded_imp_rounds_report_their_metric_above_chance(resnet8_weights, task, extra, metric, chance):
    config = ImpConfig.from_dict(dict(model="resnet8", task=task, rewind="pretrained", weights=str(resnet8_weights),
                                      rounds=2, epochs=1, batch_size=64, lr=0.02, device="cpu",
                                      train_images=256, eval_images=256, retrieval_batch_size=64, **extra))
    results = list(run_trajectory(config))
    assert [round(r.record.sparsity, 4) for r in results] == [0.0, 0.2, 0.36]
    for r in results:
        metrics = r.record.metrics
        assert metrics[f"{metric}_chance"] == pytest.approx(chance)
        assert r.record.metric == metrics[f"{metric}_top1"] > 2 * metrics[f"{metric}_chance"], metrics
    # the mask is the backbone's: no projection head or key encoder weight in it
    assert all(name.startswith(("layer", "conv")) for name in results[-1].state.mask)


@pytest.mark.parametrize("name,task", [("pretrain_simclr", "simclr"), ("pretrain_moco", "moco")])
def test_pretrain_spaces_are_embedded_imp_on_their_task_and_check_option_values(resnet8_weights, name, task):
    from ray_lth.spaces import load_space

    space = load_space(name).with_overrides(dict(weights=str(resnet8_weights)))
    configs = space.validate()
    assert len(configs) == 3 and all(c.task == task and c.rounds == 5 and c.train.milestones == () for c in configs)
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        space.with_overrides(dict(temperature=-1.0)).validate()
