"""taylor, obd, snip, grasp: closed forms on linear regression, where gradient and Hessian are known exactly."""

import pytest
import torch
from conftest import assert_bitwise, assert_plain, snapshot

import workbench as wb
from workbench.criteria import ScoreContext, get_criterion

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is fastest and steadiest


def regression(seed=0, n=24, d=5):
    """y = w.x with squared error: g = 2/N sum r_n x_n, H = 2/N sum x_n x_n^T, per-sample g_n = 2 r_n x_n."""
    g = torch.Generator().manual_seed(seed)
    model = torch.nn.Linear(d, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.randn(1, d, generator=g, dtype=torch.float64))
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    t = torch.randn(n, 1, generator=g, dtype=torch.float64)
    data = [(x[: n // 2], t[: n // 2]), (x[n // 2 :], t[n // 2 :])]
    return model, data, x, t


def score(name, model, data):
    ctx = ScoreContext("weight", "", model, model, data=data)
    return get_criterion(name).score(model.weight, ctx).double()


def closed_form(model, x, t):
    w = model.weight.detach()[0]
    r = x @ w - t[:, 0]
    grad = 2 * (r[:, None] * x).mean(0)
    hess = 2 * x.T @ x / x.shape[0]
    fisher = (2 * r[:, None] * x).square().mean(0)
    return w, r, grad, hess, fisher


def test_taylor_is_abs_weight_times_mean_gradient():
    model, data, x, t = regression()
    w, _, grad, _, _ = closed_form(model, x, t)
    torch.testing.assert_close(score("taylor", model, data)[0], (w * grad).abs(), rtol=1e-5, atol=1e-6)


def test_obd_is_half_fisher_times_w_squared():
    model, data, x, t = regression()
    w, _, _, _, fisher = closed_form(model, x, t)
    torch.testing.assert_close(score("obd", model, data)[0], 0.5 * fisher * w * w, rtol=1e-5, atol=1e-6)


def test_snip_uses_the_first_batch_and_sums_to_one():
    model, data, x, t = regression()
    n = x.shape[0] // 2
    w, _, grad, _, _ = closed_form(model, x[:n], t[:n])
    s = score("snip", model, data)[0]
    expect = (w * grad).abs()
    torch.testing.assert_close(s, expect / expect.sum(), rtol=1e-5, atol=1e-6)
    assert abs(float(s.sum()) - 1) < 1e-5


def test_grasp_is_w_times_hessian_gradient_product_with_the_papers_sign():
    model, data, x, t = regression()
    w, _, grad, hess, _ = closed_form(model, x, t)
    s = score("grasp", model, data)[0]
    torch.testing.assert_close(s, w * (hess @ grad), rtol=1e-5, atol=1e-6)
    # the paper removes the largest -w*(Hg) first; lower scores are pruned first here, so the same weight goes
    paper = -w * (hess @ grad)
    bench = wb.Workbench(model, data, metric="loss")
    bench.apply(wb.Plan.uniform(0.2, criterion="grasp"), evaluate=False)
    assert bool(bench.masks["weight"][0, int(paper.argmax())])


def test_known_ranking_taylor_prunes_the_weight_the_loss_does_not_use():
    # the target depends on inputs 0 and 1 only; inputs 2 and 3 are noise with small weights the loss ignores
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 4, generator=g)
    y = (x[:, 0] * 2 - x[:, 1] > 0).long()
    model = torch.nn.Linear(4, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[-1.0, 0.5, 0.3, 0.0], [1.0, -0.5, -0.3, 0.0]]))
        model.weight[:, 3] = 0.3  # as large as column 2, but fitted nothing either
    bench = wb.Workbench(model, [(x, y)])
    for name in ("taylor", "obd", "snip"):
        sel = bench.preview(wb.Plan.uniform(0.5, criterion=name))
        kept = ~sel.masks["weight"]
        assert kept[:, 0].all(), name  # the most useful input survives every gradient criterion


@pytest.mark.parametrize("name", ["taylor", "obd", "snip", "grasp"])
def test_scoring_never_changes_the_model_writes_no_grad_and_keeps_train_flags(name):
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(), torch.nn.Dropout(0.5), torch.nn.Flatten()
    )
    model.append(torch.nn.Linear(36, 3))
    model.train()
    model[3].eval()  # a mixed state that must come back as it was
    data = [(torch.randn(8, 1, 5, 5), torch.randint(0, 3, (8,)))]
    snap = snapshot(model)
    bench = wb.Workbench(model, data)
    live, on_live, real = {id(m) for m in model.modules()}, [], torch.func.functional_call

    def spy(module, *args, **kwargs):  # functional_call swaps the tensors of the module it runs, for the call
        if id(module) in live:
            on_live.append(type(module).__name__)
        return real(module, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.func, "functional_call", spy)
        bench.preview(wb.Plan.global_(0.5, criterion=name))
    assert not on_live, f"functional_call ran on live modules: {on_live}"
    assert_bitwise(model, snap)  # BatchNorm running stats included
    assert_plain(model)
    assert all(p.grad is None for p in model.parameters())
    assert [m.training for m in model] == [True, True, True, False, True, True]


def test_criteria_without_data_say_what_to_pass():
    model = torch.nn.Linear(3, 2)
    ctx = ScoreContext("weight", "", model, model)
    for name in ("taylor", "obd", "snip", "grasp", "wanda", "synflow"):
        with pytest.raises(wb.CriterionError, match="data"):
            get_criterion(name).score(model.weight, ctx)


def test_registry_names_each_paper():
    for name in ("taylor", "obd", "snip", "grasp", "synflow", "wanda", "wanda-row", "bn_scale"):
        crit = get_criterion(name)
        assert crit.reference and any(str(y) in crit.reference for y in range(1989, 2025)), name
        assert crit.summary
