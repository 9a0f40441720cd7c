"""training/_loop.py: argument checks name the value and its range, a seeded run forks the RNG and restores the
loaders' generators, training mode restores every flag and .grad, optimizers by name/class/callable, the KD loss is
Hinton's formula, results are plain data."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from workbench.training._loop import (
    Curves,
    Progress,
    TrainingError,
    check,
    kd_loss,
    make_optimizer,
    result,
    seeded,
    training_mode,
)


@pytest.mark.parametrize(
    ("value", "kw", "match"),
    [
        (0, {}, r"lr must be a number in \(0, inf\], got 0"),
        (-1, {"lo_open": False}, r"lr must be a number in \[0, inf\], got -1"),
        (1.5, {"integer": True}, r"lr must be an integer in \(0, inf\], got 1\.5"),
        (2.0, {"hi": 1.0}, r"lr must be a number in \(0, 1\], got 2\.0"),
        (True, {}, "got True"),
        (float("nan"), {}, "got nan"),
        ("0.1", {}, "got '0.1'"),
    ],
)
def test_check_names_the_value_and_its_range(value, kw, match):
    with pytest.raises(TrainingError, match=match):
        check(value, "lr", **kw)


def test_check_returns_the_value_and_integers_as_int():
    assert check(0.5, "lr") == 0.5 and check(0, "x", lo_open=False) == 0 and check(1.0, "hi", hi=1.0) == 1.0
    epochs = check(3.0, "epochs", integer=True)
    assert epochs == 3 and isinstance(epochs, int)


def test_a_seeded_run_is_repeatable_and_leaves_the_global_and_loader_rngs_as_they_were():
    g = torch.Generator().manual_seed(123)
    loader = torch.utils.data.DataLoader(list(range(10)), batch_size=5, shuffle=True, generator=g)
    torch.manual_seed(7)
    global_before, loader_before = torch.random.get_rng_state(), g.get_state()

    def run():
        with seeded(3, loader):
            return torch.rand(3), [b.tolist() for b in loader]

    a, b = run(), run()
    assert torch.equal(a[0], b[0]) and a[1] == b[1]  # the same draws and the same shuffling
    assert torch.equal(torch.random.get_rng_state(), global_before) and torch.equal(g.get_state(), loader_before)
    with seeded(4, loader):
        c = torch.rand(3)
    assert not torch.equal(c, a[0])


def test_training_mode_restores_each_flag_and_each_grad():
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout()).eval()
    model[1].train()
    old = torch.ones(2, 2)
    model[0].weight.grad = old
    with pytest.raises(RuntimeError, match="stop"):
        with training_mode(model):
            assert all(m.training for m in model.modules()) and model[0].weight.grad is None
            model(torch.randn(3, 2)).sum().backward()
            raise RuntimeError("stop")
    assert [m.training for m in model.modules()] == [False, False, True]
    assert model[0].weight.grad is old and model[0].bias.grad is None


def test_optimizers_by_name_class_or_callable():
    params = [nn.Parameter(torch.zeros(2))]
    sgd = make_optimizer("SGD", params, 0.1, 0.01)
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["momentum"] == 0.9 and sgd.defaults["nesterov"]
    assert isinstance(make_optimizer("adamw", params, 0.1, 0.0), torch.optim.AdamW)
    assert make_optimizer(torch.optim.RMSprop, params, 0.2, 0.0).defaults["lr"] == 0.2
    assert isinstance(make_optimizer(lambda ps: torch.optim.Adagrad(ps), params, 0.1, 0.0), torch.optim.Adagrad)
    with pytest.raises(TrainingError, match=r"optimizer must be one of .*got 'lion'"):
        make_optimizer("lion", params, 0.1, 0.0)
    with pytest.raises(TrainingError, match=r"must return a torch\.optim\.Optimizer, got int"):
        make_optimizer(lambda ps: 3, params, 0.1, 0.0)
    with pytest.raises(TrainingError, match="got 3"):
        make_optimizer(3, params, 0.1, 0.0)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("T", [1.0, 4.0])
def test_kd_loss_is_hintons_formula(alpha, T):
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    y = torch.randint(0, 3, (5,), generator=g)
    p_t = F.softmax(t / T, -1)
    kl = (p_t * (p_t.log() - F.log_softmax(s / T, -1))).sum(-1).mean()
    want = alpha * T * T * kl + (1 - alpha) * F.cross_entropy(s, y)
    torch.testing.assert_close(kd_loss(s, t, y, T, alpha), want)


def test_a_result_is_plain_data_and_a_progress_callback_sees_every_step():
    curves = Curves(epoch=[1.0, 2.0], loss=[0.5, 0.4], metric=[0.8, 0.9], lr=[0.1, 0.05])
    r = result("finetune", "fine-tune", curves, "accuracy", 2, False, 0.0, {"rounds": 1})
    assert r.final_metric == 0.9 and r.epoch.dtype == np.float64
    d = json.loads(json.dumps(r.to_dict()))
    assert d["loss"] == [0.5, 0.4] and d["info"] == {"rounds": 1} and d["entry"] == 2
    assert repr(r) == "TrainingResult(fine-tune: 2 epochs, accuracy 0.9000, entry 2)"
    empty = result("finetune", "x", Curves(), "accuracy", 1, True, 0.0)
    assert math.isnan(empty.final_metric) and repr(empty).endswith("no evaluation, entry 1, stopped)")
    seen = []
    p = Progress(lambda done, total: seen.append((done, total)), 3, "train")
    for _ in range(3):
        p.step(loss=0.1)
    p.close()
    assert seen == [(1, 3), (2, 3), (3, 3)]
