import pytest
import torch
from torch.utils.data import TensorDataset

from ray_lth.masks import ones_mask
from ray_lth.models import build_model, get_model_spec, prunable_parameters
from ray_lth.pruning import global_magnitude_prune
from ray_lth.rewind import capture_state, early_rewind_iteration, restore_state
from ray_lth.tasks import ClassificationTask
from ray_lth.train import OPTIMIZERS, MaskedParameters, TrainHparams, schedule_for, train_masked

CPU = torch.device("cpu")


def _tiny_task(n=96, classes=4):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, classes, (n,), generator=g)
    data = TensorDataset(x, y)
    return ClassificationTask("tiny", data, data, classes)


def _pruned_model(seed=0):
    torch.manual_seed(seed)
    model = build_model("resnet8", 4)
    weights = prunable_parameters(model, get_model_spec("resnet8").never_pruned)
    mask = global_magnitude_prune({n: p.detach() for n, p in weights.items()}, ones_mask(weights), 0.5)
    return model, mask


def _train(model, mask, seed=0, hook=None):
    hparams = TrainHparams(epochs=2, batch_size=32, lr=0.1, weight_decay=5e-4)
    return train_masked(model, _tiny_task(), hparams, mask, CPU, torch.Generator().manual_seed(seed), hook)


def test_pruned_weights_and_their_momentum_stay_exactly_zero():
    model, mask = _pruned_model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    hparams = TrainHparams(epochs=2, batch_size=32, lr=0.1, weight_decay=5e-4)
    optimizer_states = []
    original_step = torch.optim.SGD.step

    def spy(self, *args, **kwargs):
        out = original_step(self, *args, **kwargs)
        optimizer_states.append(self)
        return out

    torch.optim.SGD.step = spy
    try:
        train_masked(model, _tiny_task(), hparams, mask, CPU, torch.Generator().manual_seed(0))
    finally:
        torch.optim.SGD.step = original_step
    params = dict(model.named_parameters())
    optimizer = optimizer_states[-1]
    for name, keep in mask.items():
        assert (params[name][~keep] == 0).all(), name
        momentum = optimizer.state[params[name]]["momentum_buffer"]
        assert (momentum[~keep] == 0).all(), name
        assert not torch.equal(params[name][keep], before[name][keep]), f"{name} did not train"


def test_the_sgd_step_is_bit_identical_to_torchs_one_tensor_at_a_time_sgd():
    hparams = TrainHparams(epochs=1, batch_size=8, lr=0.1, weight_decay=5e-4)
    models = [_pruned_model(seed=2)[0] for _ in range(2)]
    optimizers = [OPTIMIZERS["sgd"](models[0].parameters(), hparams),
                  torch.optim.SGD(models[1].parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, foreach=False)]
    generator = torch.Generator().manual_seed(0)
    for _ in range(4):  # the first step starts the momentum, the others update it
        grads = [torch.randn(p.shape, generator=generator) for p in models[0].parameters()]
        for model, optimizer in zip(models, optimizers):
            for p, grad in zip(model.parameters(), grads):
                p.grad = grad.clone()
            optimizer.step()
    bits = lambda t: t.detach().view(torch.int32)  # noqa: E731  (bitwise: -0.0 is not 0.0)
    for p, p0 in zip(models[0].parameters(), models[1].parameters()):
        assert torch.equal(bits(p), bits(p0))
        momenta = [optimizer.state[q]["momentum_buffer"] for optimizer, q in zip(optimizers, (p, p0))]
        assert torch.equal(bits(momenta[0]), bits(momenta[1]))


def test_training_is_repeatable_on_cpu_with_a_seed():
    runs = []
    for _ in range(2):
        model, mask = _pruned_model(seed=1)
        _train(model, mask, seed=3)
        runs.append(capture_state(model))
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_masked_parameters_work_with_channels_last_weights():
    model, mask = _pruned_model()
    model.to(memory_format=torch.channels_last)
    masked = MaskedParameters(model, mask)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    masked.apply_to_weights()
    params = dict(model.named_parameters())
    assert all((params[n][~m] == 0).all() and (params[n][m] != 0).all() for n, m in mask.items())


def test_rewind_is_bit_exact_where_unpruned_and_zero_where_pruned():
    model, mask = _pruned_model()
    rewind = capture_state(model)
    _train(model, mask)
    restore_state(model, rewind, mask)
    params = dict(model.named_parameters())
    for name, tensor in rewind.items():
        if name in mask:
            assert torch.equal(params[name][mask[name]], tensor[mask[name]])
            assert (params[name][~mask[name]] == 0).all()
        else:
            assert torch.equal(model.state_dict()[name], tensor), name


def test_early_rewind_iteration_and_capture_point():
    assert early_rewind_iteration(200, 0.05) == 10
    assert early_rewind_iteration(7, 0.05) == 1
    with pytest.raises(ValueError, match="rewind_fraction"):
        early_rewind_iteration(10, 0.0)
    model, mask = _pruned_model()
    seen = []
    _train(model, mask, hook=seen.append)
    assert seen == list(range(1, 7))  # 96 samples / 32 per batch * 2 epochs


def test_schedules_follow_table_1_and_rescale_milestones():
    cifar = schedule_for("cifar10")
    assert (cifar.epochs, cifar.batch_size, cifar.lr, cifar.weight_decay, cifar.milestones) == (182, 256, 0.1, 2e-4, (91, 136))
    assert schedule_for("visda2017").milestones == (10,) and schedule_for("moco").lr == 3e-4
    assert schedule_for("cifar10", epochs=10).milestones == (5, 7)


@pytest.mark.parametrize("field, value", [("epochs", 0), ("lr", 0.0), ("momentum", 1.0), ("weight_decay", -1.0),
                                          ("milestones", (5,))])
def test_bad_training_hparams_are_rejected_by_field(field, value):
    kwargs = dict(epochs=4, batch_size=8, lr=0.1)
    kwargs[field] = value
    with pytest.raises(ValueError, match=field):
        TrainHparams(**kwargs)
