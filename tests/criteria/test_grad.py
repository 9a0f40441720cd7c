"""criteria/_grad.py: the gradient statistics equal their definitions computed independently with torch.func on a
small model (mean gradient, first batch, empirical Fisher, Hessian times gradient), are computed once per selection,
and leave the model bitwise, without a .grad and with its train flags."""

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_bitwise, snapshot
from torch import nn
from torch.func import functional_call, grad, hessian

from workbench.criteria import ScoreContext
from workbench.criteria._grad import gradient_stat, need_data, one_thread_if_small
from workbench.errors import CriterionError


def _setup():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double().train()
    g = torch.Generator().manual_seed(1)
    data = [
        (torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randint(0, 2, (5,), generator=g)) for _ in range(2)
    ]
    return model, data


def _flat_loss(model, names, shapes):
    def loss(flat, x, y):
        params, i = {}, 0
        for n, s in zip(names, shapes):
            k = int(torch.tensor(s).prod())
            params[n] = flat[i : i + k].view(s)
            i += k
        return F.cross_entropy(functional_call(model, params, (x,)), y, reduction="sum")

    return loss


def _stats(model, data):
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    flat = torch.cat([p.detach().reshape(-1) for _, p in model.named_parameters()])
    loss = _flat_loss(model.eval(), names, shapes)
    n = sum(len(y) for _, y in data)
    mean = sum(grad(loss)(flat, x, y) for x, y in data) / n
    first = grad(loss)(flat, *data[0]) / len(data[0][1])
    fisher = sum(grad(loss)(flat, x[i : i + 1], y[i : i + 1]) ** 2 for x, y in data for i in range(len(y))) / n
    hg = sum(hessian(loss)(flat, x, y) for x, y in data) / n @ mean
    model.train()
    out = {}
    for kind, v in (("mean", mean), ("first", first), ("fisher", fisher), ("hg", hg)):
        i = 0
        for nm, s in zip(names, shapes):
            k = int(torch.tensor(s).prod())
            out[(kind, nm)] = v[i : i + k].view(s)
            i += k
    return out


@pytest.mark.parametrize("kind", ["mean", "first", "fisher", "hg"])
def test_each_statistic_equals_its_definition_and_leaves_the_model_alone(kind):
    model, data = _setup()
    want = _stats(model, data)
    snap, flags = snapshot(model), [m.training for m in model.modules()]
    cache = {}
    for name, _ in model.named_parameters():
        ctx = ScoreContext(name, name.rsplit(".", 1)[0], model=model, data=data, cache=cache)
        got = gradient_stat(ctx, kind, "test")
        assert got.dtype == torch.float64 and got.shape == model.get_parameter(name).shape
        # the adapter computes the loss in float32 (logits.float()): agreement to float32 precision
        torch.testing.assert_close(got, want[(kind, name)], rtol=1e-4, atol=1e-6, msg=f"{kind} {name}")
    assert_bitwise(model, snap)
    assert all(p.grad is None for p in model.parameters())
    assert [m.training for m in model.modules()] == flags
    assert len(cache) == 2  # the statistics of every parameter, once (and the adapter)


def test_statistics_are_computed_once_per_selection():
    model, data = _setup()
    cache = {}
    a = gradient_stat(ScoreContext("0.weight", "0", model=model, data=data, cache=cache), "mean", "t")
    with torch.no_grad():
        model[0].weight.mul_(2)  # a second read of the same selection does not recompute
    b = gradient_stat(ScoreContext("0.weight", "0", model=model, data=data, cache=cache), "mean", "t")
    assert b is a


def test_without_data_or_for_a_non_float_parameter_the_error_says_what_to_do():
    with pytest.raises(
        CriterionError, match=r"criterion 'taylor' needs calibration data to score 'fc'.*Workbench\(model, data\)"
    ):
        need_data(ScoreContext("fc.weight", "fc"), "taylor")
    model, data = _setup()
    model.register_buffer("steps", torch.zeros(1, dtype=torch.long))
    model.ids = nn.Parameter(torch.zeros(2, dtype=torch.long), requires_grad=False)
    with pytest.raises(CriterionError, match=r"cannot score 'ids': it is not a floating-point parameter"):
        gradient_stat(ScoreContext("ids", "", model=model, data=data), "mean", "taylor")


def test_small_models_score_on_one_thread_and_the_count_comes_back():
    threads = torch.get_num_threads()
    with one_thread_if_small(nn.Linear(2, 2)):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == threads
    with one_thread_if_small(nn.Linear(2, 2), limit=1):
        assert torch.get_num_threads() == threads
