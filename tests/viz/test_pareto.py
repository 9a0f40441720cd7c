"""viz/pareto.py: one line per strategy through its rows sorted by cost, scaled to the axis's unit, the Pareto front
as a step through exactly the front's rows, the starting point as a star, on the axis it is given."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

from workbench.compare import CompareResult, pareto_front
from workbench.viz import plot_pareto

pytestmark = pytest.mark.usefixtures("no_figure_leaks")

_SCALE = {"flops": 1e-6, "latency": 1.0, "params": 1.0, "size": 1 / 1024}
_KEY = {"flops": "flops", "latency": "latency_ms", "params": "params", "size": "size_bytes"}


def _result(n_strategies: int = 2, seed: int = 0, latency: bool = True) -> CompareResult:
    rng = np.random.default_rng(seed)
    names = tuple(f"s{i}" for i in range(n_strategies))
    sparsities = (0.3, 0.6, 0.9)
    rows = []
    for s in names:
        for r in rng.permutation(sparsities):  # rows out of cost order: each line is sorted by cost
            rows.append(
                {
                    "strategy": s,
                    "sparsity": float(r),
                    "metric": float(rng.uniform(0.2, 1.0)),
                    "flops": float(1e6 * (1 - r) * rng.uniform(1, 2)),
                    "latency_ms": float(rng.uniform(1, 3)) if latency else None,
                    "params": float(1000 * (1 - r)),
                    "size_bytes": float(4096 * (1 - r)),
                }
            )
    base = {
        "metric": 0.95,
        "flops": 2e6,
        "latency_ms": 3.0 if latency else None,
        "params": 1000.0,
        "size_bytes": 4096.0,
    }
    return CompareResult(tuple(rows), base, "accuracy", True, names, sparsities, 32, "masked", {"model": "toy"})


@pytest.mark.parametrize("x", ["flops", "latency", "params", "size"])
def test_each_strategy_is_a_line_through_its_rows_sorted_by_cost(x):
    res = _result()
    fig, ax = plt.subplots()
    art = plot_pareto(res, x, ax=ax)
    assert plt.get_fignums() == [fig.number] and set(art["lines"]) == set(res.strategies)
    for name, line in art["lines"].items():
        cost = res.values(_KEY[x], name) * _SCALE[x]
        order = np.argsort(cost)
        np.testing.assert_allclose(line.get_xdata(), cost[order])
        np.testing.assert_allclose(line.get_ydata(), res.values("metric", name)[order])
        assert line.axes is ax
    markers = {line.get_marker() for line in art["lines"].values()}
    assert len(markers) == len(res.strategies)  # one marker per strategy
    assert ax.get_ylabel() == "accuracy" and ax.get_title() == f"toy: accuracy vs {x}"


@pytest.mark.parametrize("seed", range(5))
def test_the_front_steps_through_exactly_the_pareto_rows(seed):
    res = _result(3, seed)
    _fig, ax = plt.subplots()
    art = plot_pareto(res, "flops", ax=ax)
    idx = pareto_front(res, "flops")
    np.testing.assert_allclose(art["front"].get_xdata(), res.values("flops")[idx] * 1e-6)
    np.testing.assert_allclose(art["front"].get_ydata(), res.values("metric")[idx])
    assert art["baseline"].get_xdata()[0] == pytest.approx(2.0) and art["baseline"].get_ydata()[0] == 0.95


def test_front_and_baseline_can_be_left_out_and_a_missing_cost_has_no_star():
    res = _result(latency=False)
    _fig, ax = plt.subplots()
    art = plot_pareto(res, "params", ax=ax, front=False, baseline=False)
    assert art["front"] is None and art["baseline"] is None
    art = plot_pareto(res, "latency", ax=ax)  # not measured: no star at the start, no front (every cost is NaN)
    assert art["baseline"] is None and art["front"] is None


@pytest.mark.parametrize(("n", "below"), [(2, False), (6, True)])
def test_many_strategies_put_the_legend_below_the_axes_and_an_unknown_cost_is_refused(n, below):
    res = _result(n)
    fig, ax = plt.subplots()
    plot_pareto(res, "size", ax=ax)
    fig.canvas.draw()
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()][:n] == list(res.strategies)
    under = legend.get_window_extent().y1 <= ax.get_window_extent().y0
    assert under == below and legend.get_frame_on() != below
    with pytest.raises(ValueError, match=r"x must be one of \('flops', 'latency', 'params', 'size'\), got 'energy'"):
        plot_pareto(res, "energy", ax=ax)
