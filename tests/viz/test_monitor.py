"""viz/monitor.py: the monitor plot (threshold, batches, alerts, drift) and its live update, one artist per series."""

import matplotlib
import pytest
from conftest import val_batches as load

import workbench as wb

matplotlib.use("Agg")

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is fastest and steadiest


def test_plot_monitor_and_live_update():
    import matplotlib.pyplot as plt

    model, data, batches = load()
    bench = wb.Workbench(model, data)
    bench.apply(wb.Plan.global_(0.85))
    mon = wb.Monitor(bench, 0, threshold=0.6)
    mon.update(*batches[0])
    fig, ax = plt.subplots()
    art = wb.viz.plot_monitor(mon.result, ax=ax)
    assert art["threshold"].get_ydata()[0] == 0.6 and len(art["batch"].get_xdata()) == 1
    for x, y in batches[1:]:
        mon.update(x, y)
        wb.viz.update_monitor(art, mon.result)
    # every batch is below 0.6 (shipped weights: at most 0.117)
    assert len(art["batch"].get_xdata()) == 4 and len(art["alerts"].get_xdata()) == 4
    assert art["drift"].get_ydata().tolist() == pytest.approx(mon.result.series("drift").tolist())
    plt.close(fig)
