"""compare/result.py: the Pareto front of a CompareResult and its plot."""

import matplotlib
import pytest

import workbench as wb
from workbench.compare import pareto_front

matplotlib.use("Agg")

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is fastest and steadiest


def test_pareto_front_and_plot(small):
    import matplotlib.pyplot as plt

    model, _, val, _ = small()
    res = wb.compare(model, val, ["magnitude", "random", "filter-l1"], [0.3, 0.6, 0.9], backend="masked", repeats=2)
    for x, key in (("flops", "flops"), ("latency", "latency_ms"), ("params", "params")):
        front = pareto_front(res, x)
        assert front
        cost, y = res.values(key), res.values("metric")
        for i in range(len(res.rows)):  # every row off the front is dominated by one on it
            if i not in front:
                assert any(cost[j] <= cost[i] and y[j] >= y[i] for j in front), (x, i)
        for i in front:
            assert not any(cost[j] < cost[i] and y[j] > y[i] for j in range(len(cost))), (x, i)
    fig, axes = plt.subplots(1, 2)
    art = wb.viz.plot_pareto(res, "flops", ax=axes[0])
    assert set(art["lines"]) == {"magnitude", "random", "filter-l1"}
    assert len(art["lines"]["magnitude"].get_xdata()) == 3 and art["front"] is not None
    assert art["baseline"].get_ydata()[0] == res.baseline["metric"]
    assert axes[0].get_ylabel() == "accuracy" and not axes[1].lines
    art2 = wb.viz.plot_pareto(res, "latency", ax=axes[1], front=False)
    assert art2["front"] is None and axes[1].get_xlabel().startswith("measured latency")
    with pytest.raises(ValueError, match="x must be one of"):
        wb.viz.plot_pareto(res, "speed", ax=axes[0])
    plt.close(fig)
    assert res.baseline["speedup"] > 0  # the start state timed against itself (its value is noise: not asserted)
