"""workbench/history.py: one bench's history (the store's steps and an entry per step) with public transactions,
reached through the bench's `State`; `recommend.apply_row` records through it."""

import copy
import types

import pytest
from conftest import assert_bitwise, snapshot
from zoo import make

import workbench as wb
from workbench.recommend import apply_row


def _twins():
    """Two benches on identical copies of one model (with training data)."""
    model, data = make("rescat")
    twin = copy.deepcopy(model)
    return wb.Workbench(model, data, train=data), wb.Workbench(twin, data, train=data)


def _plain(entries):
    """What an entry records, without the seconds it took."""
    return [(e.index, e.label, e.kind, e.plan, e.layers, e.metric, e.sparsity, e.removed, e.active) for e in entries]


def test_trial_puts_back_the_entries_the_redo_steps_and_the_last_results():
    model, data = make("rescat")
    bench = wb.Workbench(model, data)
    bench.apply(wb.Plan.uniform(0.3))
    bench.apply(wb.Plan.uniform(0.5))
    bench.undo()
    log, history, before = bench.state.log, bench.history, snapshot(model)
    log.last_allocation = "kept"
    with pytest.raises(RuntimeError, match="boom"), log.trial() as start:
        assert start == 1
        bench.state.apply(wb.Plan.uniform(0.6, criterion="random"), evaluate=False)
        assert len(bench.history) == 3 and bench.history[2].label.startswith("Plan(uniform 0.6")
        log.last_allocation = None
        raise RuntimeError("boom")
    assert bench.history == history and bench.last_allocation == "kept"
    assert_bitwise(model, before)


def test_truncate_drops_the_redoable_steps_with_their_entries():
    model, data = make("rescat")
    bench = wb.Workbench(model, data)
    bench.apply(wb.Plan.uniform(0.3))
    bench.apply(wb.Plan.uniform(0.5))
    bench.undo()
    bench.state.log.truncate()
    assert len(bench.store.steps) == 1 and [e.index for e in bench.history] == [0, 1]
    assert bench.apply(wb.Plan.uniform(0.5)).index == 2  # the new step follows


def test_adopt_makes_a_new_entry_zero_and_clears_the_last_results():
    model, data = make("rescat")
    bench = wb.Workbench(model, data)
    pruned = bench.apply(wb.Plan.uniform(0.5)).sparsity
    bench.last_sensitivity = "stale"
    entry = bench.state.log.adopt(bench.state)
    assert entry.index == 0 and len(bench.history) == 1 and bench.last_sensitivity is None
    assert bench.start_sparsity == pytest.approx(pruned) and entry.label == f"start ({pruned:.0%} zeros)"


def test_state_apply_records_what_bench_apply_records():
    a, b = _twins()
    plan = wb.Plan.uniform(0.5, granularity="filter")
    a.apply(plan)
    b.state.apply(plan)
    assert _plain(a.history) == _plain(b.history) and b.history[1].layers
    assert_bitwise(b.model, snapshot(a.model))


@pytest.mark.parametrize("epochs", [0, 1])
def test_apply_row_takes_a_state_and_records_what_it_records_on_the_bench(epochs):
    a, b = _twins()
    row = types.SimpleNamespace(plan=wb.Plan.global_(0.6), strategy="global-magnitude", ratio=0.6,
                                finetune_epochs=epochs)  # fmt: skip
    ea, eb = apply_row(a, row), apply_row(b.state, row)
    assert _plain([ea]) == _plain([eb]) and _plain(a.history) == _plain(b.history)
    assert [e.kind for e in b.history[1:]] == ["prune", "finetune"][: 1 + epochs]
    assert b.history[1].label == "recommended: global-magnitude 60%"
    assert_bitwise(b.model, snapshot(a.model))


def test_report_at_the_dense_entry_follows_weights_edited_outside_once_per_edit_and_keeps_them_over_undo(
    monkeypatch,
):
    """report() at entry 0 returns the dense metrics it evaluated first; weights edited outside the workbench there
    (fine-tuned, scaled) make them stale: evaluated again, once per edit (before: the first metrics, for ever). An
    undo back to entry 0 restores the dense weights bitwise, so nothing is evaluated again."""
    import torch

    model, data = make("rescat")
    bench = wb.Workbench(model, data, metric="loss")
    calls = []
    real = type(bench.state).evaluate
    monkeypatch.setattr(type(bench.state), "evaluate", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = bench.report().now["metric"]
    assert bench.report().now["metric"] == first and len(calls) == 1
    with torch.no_grad():
        next(model.parameters()).mul_(3.0)  # an edit outside the workbench, at entry 0
    edited = bench.report()
    assert edited.now["metric"] != first and edited.dense == edited.now and len(calls) == 2
    assert bench.report().now["metric"] == edited.now["metric"] and len(calls) == 2  # once per edit
    bench.apply(wb.Plan.uniform(0.3))
    n = len(calls)
    bench.undo()
    assert bench.report().now["metric"] == edited.now["metric"] and len(calls) == n
