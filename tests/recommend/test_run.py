"""recommend/run.py: recommend() leaves the live model, its history and redo steps untouched; apply_row reproduces a
row's measured metric; a budget nothing meets; CUDA without a GPU; every demo model."""

import pytest
import torch
from conftest import assert_bitwise, assert_plain, snapshot

import workbench as wb
from workbench.recommend import apply_row, recommend

from .conftest import cnn

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is fastest and steadiest


def test_the_live_model_and_its_history_are_untouched(latency):
    bench, snap, _rec = latency
    assert_bitwise(bench.model, snap)
    assert_plain(bench.model)
    assert bench.store.position == 0 and len(bench.history) == 1
    assert bench.last_sensitivity is None and bench.last_allocation is None


def test_recommending_on_a_pruned_bench_keeps_its_redo_history():
    model, data = cnn()
    bench = wb.Workbench(model, data)
    bench.apply(wb.Plan.global_(0.3))
    bench.apply(wb.Plan.global_(0.5))
    bench.undo()  # step 2 can be redone
    snap = snapshot(model)
    history = bench.history
    rec = recommend(bench, "size", 0.02, strategies=["global-magnitude", "structured-l1"], repeats=1)
    assert_bitwise(model, snap)
    assert_plain(model)
    assert bench.history == history and bench.store.position == 1
    assert rec.metric_now == pytest.approx(bench.history[1].metric)  # measured against the state now, not dense
    for r in rec.rows:
        assert r.sparsity >= 0.3 - 0.01  # candidates keep what is already pruned
    bench.redo()
    assert bench.store.position == 2


def test_applying_a_row_reproduces_its_measured_metric():
    model, data = cnn()
    bench = wb.Workbench(model, data)
    rec = recommend(bench, "accuracy", 2.0, strategies=["global-magnitude", "structured-l1"], finetune=1, repeats=1)
    one = next(r for r in rec.rows if r.finetune_epochs == 0 and r.meets_budget)
    entry = apply_row(bench, one)
    assert entry.metrics["metric"] == one.metric
    kept = 1 - sum(int(m.sum()) for m in bench.masks.values()) / rec.params
    assert 1 / kept == pytest.approx(one.size_ratio)
    bench.undo()
    tuned = next(r for r in rec.rows if r.finetune_epochs == 1)
    apply_row(bench, tuned)  # prune, then fine-tune with the same seed: the same model as measured on the copy
    assert bench.evaluate()["metric"] == pytest.approx(tuned.metric, abs=1e-9)
    assert [e.kind for e in bench.history[1:] if e.active] == ["prune", "finetune"]


def test_a_budget_no_strategy_meets_names_the_closest_and_by_how_much():
    model, data = cnn()
    bench = wb.Workbench(model, data)
    snap = snapshot(model)
    with pytest.warns(wb.WorkbenchWarning, match="no strategy meets the budget"):
        rec = recommend(bench, "latency", 0.0, strategies=["2:4", "structured-l1"], repeats=1)
    # both lose accuracy at their smallest ratio (shipped weights: 2:4 8.6 points, structured-l1 at 10% 25 points)
    assert not rec.met and not any(r.meets_budget for r in rec.rows)
    closest = min(rec.rows, key=lambda r: r.shortfall)
    assert rec.best is closest and rec.best.shortfall > 0
    assert f"the closest is {closest.strategy}" in rec.notes[0]
    assert f"missing it by {100 * closest.shortfall:.1f} points" in rec.notes[0]
    assert "OVER" in rec.table() and " ok" not in rec.table()
    with pytest.warns(wb.WorkbenchWarning, match="it reaches"):
        rec = recommend(bench, "accuracy", 1000.0, strategies=["global-magnitude"], repeats=1)
    assert not rec.met and "over budget: reaches only" in rec.best.reason
    assert_bitwise(model, snap)


def test_cuda_without_a_gpu_says_so_and_ranks_by_what_a_gpu_can_skip(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    model, data = wb.demo.load("digits-mlp")
    bench = wb.Workbench(model, data)
    snap = snapshot(model)
    rec = recommend(bench, "latency", 0.02, "cuda", strategies=["global-magnitude", "structured-l1", "2:4"])
    assert rec.device == "cuda" and rec.measured_on is None
    assert all(r.speedup is None for r in rec.rows)
    assert rec.notes[0].startswith("CUDA speed cannot be measured here") and "2:4 semi-structured" in rec.notes[0]
    assert "2 Linear layer(s) of this model fit the 2:4 kernels' shapes" in rec.notes[1]
    assert "speed not measured" in rec.table() and "n/a" in rec.table()
    by = {r.name: r for r in rec.rows}
    s, u = by["structured-l1"], by["global-magnitude"]
    assert s.accelerated_flops == pytest.approx(1 - s.flops_kept) and u.accelerated_flops == 0.0
    assert by["2:4"].accelerated_flops > 0.3  # half of the eligible layers' FLOPs
    if s.meets_budget and u.meets_budget:
        assert s.rank < u.rank
    assert "physically removed (shrink), which a GPU skips too" in s.reason
    assert_bitwise(model, snap)


@pytest.mark.parametrize("name", wb.demo.available())
def test_every_demo_model(name, demo_models):
    model, data = demo_models[name]
    bench = wb.Workbench(model, data)
    snap = snapshot(model)
    rec = recommend(bench, "size", 0.02, strategies=["global-magnitude", "structured-l1", "2:4"], repeats=1)
    assert rec.rows and rec.model == bench.name
    for r in rec.rows:
        assert r.reason and 0 < r.size <= 1.0 and r.size_ratio >= 1.0 and 0 <= r.flops_kept <= 1.0
        assert r.speedup is not None and r.speedup > 0
    assert_bitwise(model, snap)
    assert_plain(model)
    entry = bench.apply(rec.best.plan)
    assert entry.metrics["metric"] == rec.best.metric
    bench.undo()
    assert_bitwise(model, snap)
