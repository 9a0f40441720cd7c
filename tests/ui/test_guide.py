"""The selection guide widget, headless and synchronous: constraints in, ranked table out, Apply best."""

import warnings

import pytest
import torch
from conftest import assert_bitwise, assert_plain, snapshot

import workbench as wb

pytest.importorskip("ipywidgets")

SYNC = {"threaded": False, "scheduler": lambda delay, fn: fn()}
FAST = {"strategies": ["global-magnitude", "structured-l1", "2:4"], "repeats": 1}


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is fastest and steadiest


@pytest.fixture
def mlp():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, data = wb.demo.load("digits-mlp")
    return model, data


def make(bench):
    g = wb.ui.guide(bench, **SYNC)
    g.options = dict(FAST)
    return g


def test_recommend_shows_the_ranked_table_and_apply_best_applies_it(mlp):
    model, data = mlp
    bench = wb.Workbench(model, data)
    snap = snapshot(model)
    g = make(bench)
    box = g.widget()
    assert g.apply_button in box.children[1].children and g.apply_button.disabled and g.result is None
    g.run_button.click()
    rec = g.result
    assert rec is not None and rec.goal == "latency" and rec.budget == pytest.approx(0.01)  # slider: 1.0 point
    for r in rec.rows:
        assert r.strategy in g.table.value and f"{r.speedup:.2f}x" in g.table.value
    assert "Best:" in g.summary.value and "speed measured on CPU" in g.summary.value
    assert_bitwise(model, snap)  # recommending never touches the model
    assert not g.apply_button.disabled and g.apply_button.description == "Apply best"
    g.apply_button.click()
    best = rec.best
    entry = bench.current
    assert bench.store.position == 1 and entry.label.startswith(f"recommended: {best.strategy}")
    assert entry.metrics["metric"] == best.metric  # the applied plan measures what the table said
    assert "Applied" in g.summary.value and g.apply_button.disabled
    bench.undo()
    assert_bitwise(model, snap)
    assert_plain(model)


def test_constraint_changes_re_run_with_the_new_budget(mlp, monkeypatch):
    model, data = mlp
    bench = wb.Workbench(model, data)
    g = make(bench)
    g.goal.value = "size"  # before the first run: nothing runs yet
    assert g.result is None
    g.run_button.click()
    assert g.result.goal == "size"
    g.budget.value = 2.0  # points of accuracy
    assert g.result.budget == pytest.approx(0.02)
    g.goal.value = "accuracy"  # the slider becomes a size ratio
    assert "size ratio" in g.budget.description and g.budget.value == 2.0 and g.budget.min == 1.0
    assert g.result.goal == "accuracy" and g.result.budget == 2.0
    g.budget.value = 1.5
    assert g.result.budget == 1.5 and all(r.size_ratio >= 1.5 for r in g.result.rows if r.meets_budget)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    g.device.value = "cuda"
    assert g.result.device == "cuda" and g.result.measured_on is None
    assert "speed not measured" in g.summary.value and "CUDA speed cannot be measured here" in g.summary.value


def test_a_budget_nothing_meets_offers_the_closest(mlp):
    model, data = mlp
    bench = wb.Workbench(model, data)
    g = make(bench)
    g.options["strategies"] = ["2:4", "block4x4"]  # both cost accuracy on digits-mlp at any ratio
    g.budget.value = 0.0
    with pytest.warns(wb.WorkbenchWarning, match="no strategy meets the budget"):
        g.run_button.click()
    assert not g.result.met and g.apply_button.description == "Apply closest (over budget)"
    assert g.apply_button.button_style == "warning" and "the closest is" in g.summary.value
    assert g.table.value.count(">over<") == len(g.result.rows)


def test_a_stale_table_is_not_applied(mlp):
    model, data = mlp
    bench = wb.Workbench(model, data)
    g = make(bench)
    g.run_button.click()
    bench.apply(wb.Plan.global_(0.3))  # the model changed outside the guide
    g.apply_button.click()
    assert bench.store.position == 1 and "model changed" in g.log.last and g.apply_button.disabled


def test_a_change_while_busy_runs_once_the_task_ends(mlp):
    model, data = mlp
    bench = wb.Workbench(model, data)
    g = make(bench)
    g.run_button.click()
    g.busy.running = True  # another task holds the runner
    g.goal.value = "accuracy"
    assert g._pending and g.result.goal == "latency"
    g._after_task()  # what the runner calls as that task ends
    assert not g._pending and g.result.goal == "accuracy"
    g.busy.running = False


def test_errors_land_in_the_log(mlp, monkeypatch):
    model, data = mlp
    bench = wb.Workbench(model, data)
    g = make(bench)
    g.options = {"strategies": ["no-such-strategy"]}
    g.run_button.click()
    assert "RecommendationError" in g.log.last and "no-such-strategy" in g.log.last and g.result is None


def test_the_guide_is_a_dashboard_tab(mlp):
    pytest.importorskip("matplotlib")
    model, data = mlp
    bench = wb.Workbench(model, data)
    d = bench.show(new=True, **SYNC)
    assert "guide" in d.tabs and d.tabs["guide"].title == "Guide"
    d.widget()
    d.select("guide")
    g = d.tabs["guide"]
    g.options = dict(FAST)
    g.run_button.click()
    g.apply_button.click()
    assert bench.store.position == 1 and len(d.actions.history.options) == 2  # the dashboard redrew its history
    assert g.apply_button.disabled
    d.actions.undo_button.click()
    assert bench.store.position == 0 and g.apply_button.disabled  # measured on the model before the apply
