"""analysis/_estimate.py: the one-pass estimate in loss units tracks the exact scan, the vectorised per-sample Fisher
equals the per-sample loop, the estimate says how far to trust it (low at a minimum, where first-order terms vanish),
and its trust cells are distinct."""

import importlib

import numpy as np
import pytest
import torch
from conftest import assert_bitwise, assert_plain, snapshot
from zoo import make

import workbench as wb
from workbench.adapter import Adapter
from workbench.analysis.sensitivity import SensitivityResult

from .conftest import _exact_loss


def test_estimate_is_one_pass_in_loss_units_and_tracks_the_exact_scan():
    from scipy.stats import spearmanr

    model, data = wb.demo.load("digits-mlp")
    bench = wb.Workbench(model, data, metric="loss")
    snap = snapshot(model)
    exact = bench.sensitivity(np.linspace(0.1, 0.9, 9), progress=False)
    est = bench.sensitivity(np.linspace(0.1, 0.9, 9), mode="estimate")
    est2 = bench.sensitivity(np.linspace(0.1, 0.9, 9), mode="estimate", second_order=True)
    assert est.mode == "estimate" and est.metric_name == "loss (estimated)" and est.values.shape == exact.values.shape
    # shipped weights: rho 0.952 (first order) and 0.958 (second order)
    assert spearmanr(exact.values.ravel(), est.values.ravel())[0] > 0.8
    assert spearmanr(exact.values.ravel(), est2.values.ravel())[0] > 0.8
    assert all(p.grad is None for p in model.parameters())  # gradients were not left on the model
    assert_bitwise(model, snap)


@pytest.mark.parametrize("name", ["digits-mlp", "digits-cnn", "digits-lstm", "digits-transformer"])
def test_vectorised_per_sample_fisher_equals_the_per_sample_loop(name, demo_models, monkeypatch):
    S = importlib.import_module("workbench.analysis.sensitivity")  # the package exports a function of that name

    model, data = demo_models[name]
    x, y = next(iter(data.calib))
    x, y = x[:24], y[:24]
    names = [n for n, p in model.named_parameters() if p.dim() > 1]
    params = [model.get_parameter(n) for n in names]
    ad = Adapter(model, task="classification")
    used = []
    real = torch.func.vmap
    monkeypatch.setattr(torch.func, "vmap", lambda *a, **k: used.append(1) or real(*a, **k))
    with torch.enable_grad():
        fast = S._squared_sample_grads(ad, model.eval(), names, params, x, y)
        assert used  # the vectorised path ran (the LSTM's falls back inside it)
        monkeypatch.setattr(torch.func, "vmap", None)  # the fallback: one backward pass per sample
        slow = S._squared_sample_grads(ad, model, names, params, x, y)
    for n, a, b in zip(names, fast, slow):
        # float32 gradients summed in another order: equal to ~1e-5 of the largest entry
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5 * float(b.abs().max())), n


@pytest.mark.parametrize("arch", ["rescat", "mha"])
def test_an_estimate_says_how_far_to_trust_it(arch):
    model, data = make(arch)
    bench = wb.Workbench(model, data, metric="accuracy")
    snap = snapshot(model)
    ratios = np.linspace(0.1, 0.9, 9)
    est = bench.sensitivity(ratios, mode="estimate", progress=False)
    exact = _exact_loss(bench, ratios)
    assert est.trust is not None and 0.0 <= est.trust <= 1.0
    cells = {(i, j) for i, j, _, _ in est.checks}
    assert len(cells) == min(8, est.values.size)  # spread over the rows
    assert len({i for i, _ in cells}) == min(8, len(est.layers))
    for i, j, e, x in est.checks:  # the checked cells: the estimate's value and the exact loss change
        assert e == est.values[i, j] and x == pytest.approx(exact.values[i, j], abs=1e-6)
    assert not est.exact.any() and exact.exact.all() and exact.trust == 1.0
    back = SensitivityResult.from_dict(est.to_dict())  # plain data, trust and checks included
    assert back.trust == est.trust and back.checks == est.checks and np.array_equal(back.exact, est.exact)
    assert back.scale == pytest.approx(est.scale) and est.scale > 0
    none = bench.sensitivity(ratios, mode="estimate", trust_cells=0, progress=False)
    assert none.trust is None and none.checks == () and np.array_equal(none.values, est.values)
    assert_bitwise(model, snap)
    assert_plain(model)


def _at_a_minimum(seed=0):
    """Two linear layers fitted exactly (least squares in float64) to regression data: every gradient of the
    loss is zero at these weights, yet removing weights of either layer raises the loss."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(256, 12, generator=g, dtype=torch.float64)
    y = x @ torch.randn(12, 3, generator=g, dtype=torch.float64) + 0.1 * torch.randn(
        256, 3, generator=g, dtype=torch.float64
    )
    w1 = torch.randn(12, 12, generator=g, dtype=torch.float64)
    h = torch.cat([x @ w1.T, torch.ones(256, 1, dtype=torch.float64)], 1)
    sol = torch.linalg.lstsq(h, y).solution  # (13, 3): the output layer's weight and bias
    model = torch.nn.Sequential(torch.nn.Linear(12, 12, bias=False), torch.nn.Linear(12, 3))
    with torch.no_grad():
        model[0].weight.copy_(w1)
        model[1].weight.copy_(sol[:12].T)
        model[1].bias.copy_(sol[12])
    xs, ys = x.float(), y.float()
    return model, [(xs[i : i + 64], ys[i : i + 64]) for i in range(0, 256, 64)]


def test_trust_is_low_when_first_order_terms_vanish_at_a_minimum():
    model, data = _at_a_minimum()
    bench = wb.Workbench(model, data, metric="loss")
    ratios = np.linspace(0.1, 0.9, 9)
    with torch.enable_grad():
        loss = sum(torch.nn.functional.mse_loss(model(x), y, reduction="sum") for x, y in data)
        grads = torch.autograd.grad(loss, list(model.parameters()))
    assert max(float(gr.abs().max()) for gr in grads) < 1e-3  # at the minimum (float32 rounding aside)
    exact = _exact_loss(bench, ratios)
    assert (exact.values > 0).all() and exact.values.max() > 0.1  # removing weights hurts
    first = bench.sensitivity(ratios, mode="estimate", progress=False)
    second = bench.sensitivity(ratios, mode="estimate", second_order=True, progress=False)
    assert len(first.checks) == 8 and first.trust < 0.05  # predicts ~0 everywhere: not to be trusted
    assert {i for i, _, _, _ in first.checks} == {0, 1}  # both layers checked
    assert first.scale < 1e-3
    # the empirical Fisher at a near-perfect fit is tiny (squared residuals): it misses most of the curvature
    assert 0.0 <= second.trust <= 1.0 and second.scale < 0.1


def test_trust_cells_are_distinct_and_never_loop_when_rows_are_few():
    from workbench.analysis._estimate import pick_cells

    # 3 rows x 3 ratios with 8 cells asked used to put 4 picks on the middle row and loop forever looking for a
    # free ratio there (the digits-mlp estimate hung)
    for rows in range(1, 7):
        for cols in range(1, 7):
            for k in range(1, 14):
                cells = pick_cells(rows, cols, k)
                assert len(cells) == len(set(cells)) == min(k, rows * cols), (rows, cols, k)
                assert all(0 <= i < rows and 0 <= j < cols for i, j in cells)
