"""ui/memory.py: what the dashboard remembers per bench (the edited plan, the last dashboard), kept apart for each
bench and only as long as the bench lives."""

import gc

import pytest
import torch
from zoo import make

import workbench as wb
from workbench.ui.memory import _STATE, dashboard_of, ui_state

pytest.importorskip("ipywidgets")
pytest.importorskip("matplotlib")

SYNC = {"threaded": False, "scheduler": lambda delay, fn: fn()}


def test_reopening_keeps_state_and_two_dashboards_do_not_share(demo_models):
    model, data = demo_models["digits-cnn"]
    b1 = wb.Workbench(model, data)
    m2, d2 = make("rescat")
    b2 = wb.Workbench(m2, d2)
    d1 = b1.show(**SYNC)
    d1.editor.rows["features.0"].slider.value = 0.4
    assert b1.show() is d1 and b1.show().editor.rows["features.0"].slider.value == 0.4
    fresh = b1.show(new=True, **SYNC)  # even a new dashboard reads the plan from the bench's ui_state
    assert fresh.editor.rows["features.0"].slider.value == 0.4
    other = b2.show(**SYNC)
    assert all(r.slider.value == 0 for r in other.editor.rows.values())


def test_ui_state_is_one_dict_per_bench_and_goes_with_the_bench():
    a = wb.Workbench(torch.nn.Linear(4, 2), [(torch.randn(8, 4), torch.randint(0, 2, (8,)))])
    b = wb.Workbench(torch.nn.Linear(4, 2), [(torch.randn(8, 4), torch.randint(0, 2, (8,)))])
    ui_state(a)["plan"] = {"layers": {}}
    assert ui_state(a) is ui_state(a) and ui_state(b) == {}
    n = len(_STATE)
    del a
    gc.collect()
    assert len(_STATE) == n - 1  # weakly keyed: nothing keeps a bench alive


def test_dashboard_of_gives_the_last_one_unless_asked_for_a_new_one():
    model, data = make("rescat")
    bench = wb.Workbench(model, data)
    first = dashboard_of(bench, **SYNC)
    assert dashboard_of(bench) is first and bench.show() is first
    fresh = dashboard_of(bench, new=True, **SYNC)
    assert fresh is not first and dashboard_of(bench) is fresh
