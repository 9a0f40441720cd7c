"""analysis/_refine.py: refine run to the end is the exact scan, filled in cell by cell; it stops on a budget, a time
limit, a stop callback or Ctrl-C; measures the cells near the current ratios first; the log-linear fill recovers
geometric rows, fill_map keeps an estimate that predicts changes of either sign and predicts 0 below the loss's
smallest step; refine_steps is a generator the caller can leave."""

import math
import threading

import numpy as np
import pytest
from conftest import assert_bitwise, assert_plain, snapshot
from zoo import make

import workbench as wb
from workbench.analysis._estimate import pick_cells
from workbench.analysis._refine import corrected, fill_choice, fill_map, log_linear, refine_order, zero_level
from workbench.analysis.sensitivity import SensitivityResult
from workbench.errors import WorkbenchError

from .conftest import _exact_loss


def test_refine_run_to_the_end_is_the_exact_scan_and_fills_in_cell_by_cell():
    model, data = make("rescat")
    bench = wb.Workbench(model, data, metric="accuracy")
    snap = snapshot(model)
    ratios = np.linspace(0.1, 0.9, 9)
    exact = _exact_loss(bench, ratios)
    maps = []
    res = bench.sensitivity(ratios, mode="refine", on_update=maps.append, progress=False)
    assert bench.last_sensitivity is res
    assert res.mode == "refine" and res.metric_name == "loss" and res.complete and res.exact.all()
    np.testing.assert_allclose(res.values, exact.values, atol=1e-6, rtol=0)
    assert res.baseline == pytest.approx(exact.baseline, abs=1e-9)
    counts = [int(m.exact.sum()) for m in maps]
    assert counts[0] == len(res.checks) and counts == list(range(counts[0], res.values.size + 1))
    est = bench.sensitivity(ratios, mode="estimate", progress=False)
    zero = zero_level(model, res.baseline, len(data))
    for m in maps:  # every intermediate map: exact where marked, predicted from the exact cells elsewhere
        np.testing.assert_allclose(m.values[m.exact], exact.values[m.exact], atol=1e-6, rtol=0)
        np.testing.assert_array_equal(m.estimate, est.values)
        np.testing.assert_array_equal(m.values, fill_map(est.values, m.values, m.exact, zero))
        assert m.fill == fill_choice(est.values, m.values, m.exact, zero)
        assert np.isfinite(m.values).all()
    back = SensitivityResult.from_dict(maps[3].to_dict())  # plain data, the starting estimate included
    np.testing.assert_array_equal(back.estimate, maps[3].estimate)
    np.testing.assert_array_equal(back.exact, maps[3].exact)
    assert 0.0 <= res.trust <= 1.0
    assert_bitwise(model, snap)
    assert_plain(model)


def test_refine_stops_on_a_budget_a_time_limit_a_stop_callback_or_ctrl_c():
    model, data = make("rescat")
    bench = wb.Workbench(model, data)
    snap = snapshot(model)
    ratios = np.linspace(0.1, 0.9, 9)
    exact = _exact_loss(bench, ratios)
    n = exact.values.size
    part = bench.sensitivity(ratios, mode="refine", budget=0.5, progress=False)
    assert int(part.exact.sum()) == math.ceil(0.5 * n) and not part.complete
    calls = []
    stopped = bench.sensitivity(ratios, mode="refine", stop=lambda: len(calls) >= 4, on_update=calls.append)
    assert int(stopped.exact.sum()) == len(stopped.checks) + 3
    timed = bench.sensitivity(ratios, mode="refine", time_limit=0.0, progress=False)
    assert int(timed.exact.sum()) == len(timed.checks)

    def ctrl_c(done, total):
        if done >= 12:
            raise KeyboardInterrupt

    with pytest.warns(UserWarning, match="interrupted"):
        cut = bench.sensitivity(ratios, mode="refine", progress=ctrl_c)
    assert not cut.complete and 0 < int(cut.exact.sum()) < n
    for r in (part, stopped, timed, cut):
        np.testing.assert_allclose(r.values[r.exact], exact.values[r.exact], atol=1e-6, rtol=0)
        assert np.isfinite(r.values).all()
    assert_bitwise(model, snap)
    assert_plain(model)


def test_refine_measures_the_cells_near_the_current_ratios_first():
    model, data = make("rescat")
    bench = wb.Workbench(model, data)
    ratios = np.linspace(0.1, 0.9, 9)
    rows = bench.sensitivity(ratios, mode="estimate", trust_cells=0, progress=False).layers
    around = {rows[0]: 0.5, rows[-1]: 0.2}
    first = bench.sensitivity(ratios, mode="refine", trust_cells=0, around=around, budget=6 / (9 * len(rows)))
    got = {(int(i), int(j)) for i, j in np.argwhere(first.exact)}
    assert got == {(0, 3), (0, 4), (0, 5), (len(rows) - 1, 0), (len(rows) - 1, 1), (len(rows) - 1, 2)}
    # a plan names its ratios the same way; with none, the largest predicted changes go first
    plan = wb.Plan({rows[0]: wb.LayerPlan(0.5)})
    by_plan = bench.sensitivity(ratios, mode="refine", trust_cells=0, around=plan, budget=3 / (9 * len(rows)))
    assert {(int(i), int(j)) for i, j in np.argwhere(by_plan.exact)} == {(0, 3), (0, 4), (0, 5)}
    # with none: every row's largest ratio, rows with the larger predicted change first, then the middle ratios
    est = bench.sensitivity(ratios, mode="estimate", trust_cells=0, progress=False)
    n = len(rows)
    top = bench.sensitivity(ratios, mode="refine", trust_cells=0, budget=2 / est.values.size, progress=False)
    biggest = {(int(i), 8) for i in np.argsort(-np.abs(est.values[:, 8]), kind="stable")[:2]}
    assert {tuple(map(int, c)) for c in np.argwhere(top.exact)} == biggest
    more = bench.sensitivity(ratios, mode="refine", trust_cells=0, budget=(n + 1) / est.values.size, progress=False)
    got = {tuple(map(int, c)) for c in np.argwhere(more.exact)}
    assert {(i, 8) for i in range(n)} < got and len(got - {(i, 8) for i in range(n)}) == 1
    assert next(iter(got - {(i, 8) for i in range(n)}))[1] == 4


def test_log_linear_fill_recovers_rows_that_grow_geometrically_from_their_exact_cells():
    """By construction: each row's true change is a_i * q**j (q differs per row), the estimate grows linearly and
    ranks the low ratios wrongly; with each row's smallest, middle and largest ratio measured, the prediction is the
    truth. With only the middle and largest measured, the cells below follow the median slope of all rows; above a
    row's last exact cell, the flatter of that slope and the row's own last segment."""
    j = np.arange(9)
    qs = [1.9, 1.5, 2.2, 1.2]
    truth = np.array([a * q**j for q, a in zip(qs, [1e-4, 1e-2, 1e-6, 1e-1])])
    estimate = np.outer([1.0, 3.0, 0.5, 2.0], j + 1.0)[:, ::-1].copy()  # decreasing: every shape is wrong
    exact = np.zeros(truth.shape, dtype=bool)
    exact[:, [0, 4, 8]] = True
    got = log_linear(estimate, np.where(exact, truth, np.nan), exact)
    np.testing.assert_allclose(got, truth, rtol=1e-9)
    assert fill_choice(estimate, np.where(exact, truth, np.nan), exact) == "log-linear"
    np.testing.assert_array_equal(fill_map(estimate, np.where(exact, truth, np.nan), exact), got)
    exact[:, 0] = False
    got = log_linear(estimate, np.where(exact, truth, np.nan), exact)
    median = np.median(np.log(qs))
    np.testing.assert_allclose(got[:, 4:], truth[:, 4:], rtol=1e-9)
    np.testing.assert_allclose(got[:, :4], truth[:, [4]] * np.exp(median * (j[:4] - 4)), rtol=1e-9)
    exact[2] = [False, False, True, False, False, True, False, False, False]  # q=2.2, steeper than the median
    got = log_linear(estimate, np.where(exact, truth, np.nan), exact)
    np.testing.assert_allclose(got[2, 2:6], truth[2, 2:6], rtol=1e-9)
    np.testing.assert_allclose(got[2, 6:], truth[2, 5] * np.exp(median * (j[6:] - 5)), rtol=1e-9)
    exact[:] = False
    exact[:, [4, 8]] = True
    # a row with one exact cell takes the others' median log-slope; a row with none, the scaled estimate
    exact[0] = [False] * 8 + [True]
    exact[1] = False
    got = log_linear(estimate, np.where(exact, truth, np.nan), exact)
    slope = np.median(np.log([2.2, 1.2]))  # rows 2 and 3 have two exact cells
    np.testing.assert_allclose(got[0], truth[0, 8] * np.exp(slope * (j - 8)), rtol=1e-9)
    e, x = estimate[exact], truth[exact]
    np.testing.assert_allclose(got[1], estimate[1] * (e @ x) / (e @ e), rtol=1e-9)
    # a change at or below the noise level (the largest negative change measured) counts as that level; the
    # measured cells keep their values
    vals = np.array([[np.nan, -0.02, np.nan, 0.5], [np.nan, np.nan, np.nan, -0.01]])
    got = log_linear(np.ones((2, 4)), vals, ~np.isnan(vals))
    np.testing.assert_allclose(got[0], [0.004, -0.02, 0.1, 0.5], rtol=1e-9)
    np.testing.assert_allclose(got[1], [0.02 / 125, 0.02 / 25, 0.02 / 5, -0.01], rtol=1e-9)
    assert np.isfinite(log_linear(np.zeros((2, 3)), np.zeros((2, 3)), np.ones((2, 3), dtype=bool))).all()
    # a steep segment extrapolated far stays finite: at most ten times the largest measured change
    steep = np.full((1, 40), np.nan)
    steep[0, :2] = [1e-30, 1.0]
    got = log_linear(np.ones((1, 40)), steep, ~np.isnan(steep))
    assert np.isfinite(got).all() and got.max() == pytest.approx(10.0)


def test_fill_map_keeps_an_estimate_that_predicts_changes_of_either_sign():
    """By construction, as on a model with random weights: loss changes of either sign that the estimate predicts to
    within a second-order term (truth = estimate * (1 + r**2 / 3)). After the trust cells and 20% of the map in
    refine order, a log-linear fill ranks the map far worse than the raw estimate (signed changes have no geometric
    shape); fill_map chooses the corrected estimate, which ranks it as the estimate does (> 0.99)."""
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    ratios = np.linspace(0.1, 0.9, 9)
    estimate = rng.normal(size=(12, 9)).cumsum(axis=1) * 1e-3
    truth = estimate * (1 + ratios**2 / 3)
    exact = np.zeros(truth.shape, dtype=bool)
    for i, j in pick_cells(12, 9, 8):
        exact[i, j] = True
    for i, j in refine_order(estimate, exact, ratios, None)[: math.ceil(0.2 * truth.size) - 8]:
        exact[i, j] = True
    values = np.where(exact, truth, np.nan)
    rho = {
        name: spearmanr(got.ravel(), truth.ravel()).statistic
        for name, got in (
            ("estimate", estimate),
            ("log-linear", log_linear(estimate, values, exact)),
            ("corrected", corrected(estimate, values, exact)),
        )
    }
    assert rho["log-linear"] < 0.5 < rho["estimate"]
    assert fill_choice(estimate, values, exact) == "corrected"
    got = fill_map(estimate, values, exact)
    np.testing.assert_array_equal(got[exact], truth[exact])
    assert spearmanr(got.ravel(), truth.ravel()).statistic > 0.99


def test_refine_measures_loss_and_says_so_for_another_metric():
    model, data = make("rescat")
    bench = wb.Workbench(model, data)
    with pytest.raises(WorkbenchError, match=r"metric is 'loss'.*mode='exact'"):
        bench.sensitivity(mode="refine", metric="accuracy")
    with pytest.raises(WorkbenchError, match=r"budget .* \[0, 1\]; got 1.5"):
        bench.sensitivity(mode="refine", budget=1.5)


def test_refine_steps_is_a_generator_the_caller_can_leave_at_any_time():
    from workbench.analysis.sensitivity import refine_steps

    model, data = make("rescat")
    bench = wb.Workbench(model, data)
    snap = snapshot(model)
    seen = []
    for m in refine_steps(bench, (0.3, 0.6, 0.9), trust_cells=2, progress=False):
        seen.append(int(m.exact.sum()))
        if len(seen) == 4:
            break  # leaving the loop ends the scan
    assert seen == [2, 3, 4, 5]
    assert_bitwise(model, snap)
    assert_plain(model)
    got = []  # the generator released the bench's lock when it was left: another thread can take it
    t = threading.Thread(target=lambda: got.append(bench.store.lock.acquire(timeout=5) and bench.store.lock.release()))
    t.start()
    t.join()
    assert got == [None]


def test_refine_predicts_zero_where_no_measurement_could_see_a_change():
    """A residual branch scaled by 1e-9 (ConvNeXt's layer scale at initialisation): pruning its layer changes the
    float32 loss by less than half a float step, so the exact cells read 0 while the estimate reads ~1e-10. The refined map predicts 0 for that row's cells not yet measured (before: the raw estimate, which
    ranked the cells of an unchanged row by float noise), and the estimate itself stays as computed."""
    import torch
    from torch import nn

    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.branch, self.head = nn.Linear(8, 16), nn.Linear(16, 16), nn.Linear(16, 3)

        def forward(self, x):
            h = torch.relu(self.stem(x))
            return self.head(h + 1e-9 * self.branch(h))

    torch.manual_seed(0)
    model = Scaled().eval()
    data = [(torch.randn(32, 8), torch.randint(0, 3, (32,))) for _ in range(2)]
    bench = wb.Workbench(model, data)
    snap = snapshot(model)
    ratios = np.linspace(0.1, 0.9, 9)
    got = bench.sensitivity(ratios, mode="refine", budget=0.4, layers=["branch", "stem", "head"], progress=False)
    row = got.layers.index("branch")
    zero = zero_level(model, got.baseline, len(data))
    assert np.abs(got.estimate[row]).max() > 0  # the estimate sees a change ...
    assert np.abs(got.estimate[row]).max() <= zero  # ... too small to move the measured loss
    assert (~got.exact[row]).any()
    assert (got.values[row][~got.exact[row]] == 0).all()
    others = np.delete(np.arange(len(got.layers)), row)  # the other rows' predictions are not touched
    assert (got.values[others] != 0).all()
    exact = bench.sensitivity(ratios, layers=["branch", "stem", "head"], metric="loss", progress=False)
    assert (exact.values[row] == 0).all()
    assert_bitwise(model, snap)
