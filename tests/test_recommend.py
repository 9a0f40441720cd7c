"""recommend: rankings measured on the model, reasons with their numbers, budgets, devices, the live model untouched."""

import json
import warnings

import pytest
import torch
from conftest import assert_bitwise, assert_plain, snapshot

import workbench as wb
from workbench.recommend import (
    STRATEGIES,
    RecommendationError,
    _key,
    apply_row,
    available_strategies,
    guide_markdown,
    recommend,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is fastest and steadiest


def cnn():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, data = wb.demo.load("digits-cnn")
    return model, data


@pytest.fixture(scope="module")
def latency():
    """digits-cnn, goal latency on CPU, with one epoch of fine-tuning measured; the model's snapshot before."""
    torch.set_num_threads(1)
    model, data = cnn()
    bench = wb.Workbench(model, data)
    snap = snapshot(model)
    rec = recommend(bench, "latency", 0.01, "cpu", finetune=1)
    return bench, snap, rec


def test_latency_ranking_on_cpu_follows_measured_speed(latency):
    _bench, _, rec = latency
    # met: shipped weights: global magnitude keeps 30% one-shot within the budget (0.56 of 1.0 points)
    assert rec.goal == "latency" and rec.measured_on == "CPU" and rec.met
    rows = list(rec.rows)
    assert [r.rank for r in rows] == list(range(1, len(rows) + 1))
    assert rows == sorted(rows, key=_key("latency", True))  # the documented order
    within = [r for r in rows if r.meets_budget]
    assert within and rows[: len(within)] == within  # rows within budget come first
    assert all(r.drop <= 0.01 + 1e-12 for r in within) and all(r.drop > 0.01 for r in rows[len(within) :])
    assert {r.family for r in rows} >= {"structured", "unstructured", "N:M", "block"}
    # a structured strategy that measured faster than an unstructured one ranks above it
    for s in within:
        for u in within:
            if s.family == "structured" and u.family == "unstructured" and round(s.speedup, 1) > round(u.speedup, 1):
                assert s.rank < u.rank, (s, u)
    # unstructured masks give no speed here unless a sparse kernel measured a clear gain
    for r in rows:
        if r.family == "unstructured":
            assert (r.backend == "dense" and r.speedup == 1.0) or (r.backend == "csr" and r.speedup > 1.05)
        if r.backend == "shrink":
            assert r.measured["shrink"]["speedup"] == r.speedup and r.size < 1.0
    assert rec.best is rows[0] and isinstance(rec.best.plan, wb.Plan)


def test_fine_tuning_is_measured_and_recovers_accuracy(latency):
    _, _, rec = latency
    tuned = [r for r in rec.rows if r.finetune_epochs == 1]
    assert tuned and all(r.timing == "+ fine-tune 1 ep" for r in tuned)
    oneshot = {r.name: r for r in rec.rows if r.finetune_epochs == 0}
    # on digits-cnn removing 10% of the filters one-shot costs far more than the budget (shipped weights: 25 points);
    # one epoch recovers accuracy (0.747 -> 0.997 here). Whether it lands within the 1-point budget is decided by
    # the training run: benchmarks/trained_claims.py measures it.
    s = next(r for r in tuned if r.name == "structured-l1")
    assert not oneshot["structured-l1"].meets_budget and s.ratio >= oneshot["structured-l1"].ratio
    assert s.metric > oneshot["structured-l1"].metric
    assert s.meets_budget == (s.drop <= 0.01 + 1e-12)


def test_reasons_state_the_measured_numbers(latency):
    _, _, rec = latency
    for r in rec.rows:
        assert r.reason.startswith(r.strategy + ":") and r.reason.endswith(".")
        assert f"{r.metric:.1%}" in r.reason and f"{rec.metric_now:.1%}" in r.reason
        assert f"{r.ratio:.0%}" in r.reason or r.family == "N:M"
        if not r.meets_budget:
            assert f"over budget by {100 * r.shortfall:.1f} points" in r.reason
        elif r.backend != "dense":
            assert f"measured {r.speedup:.2f}x on CPU ({r.backend})" in r.reason
        else:
            alt = next(k for k, v in r.measured.items() if v["speedup"] is not None)
            assert f"{alt} {r.measured[alt]['speedup']:.2f}x, so it stays dense" in r.reason
        if r.finetune_epochs:
            assert "after 1 epoch(s) of fine-tuning" in r.reason
    text = rec.table()
    assert all(f"{r.rank}. {r.reason}" in text for r in rec.rows)
    assert "budget: at most 1.0 points of accuracy lost" in text
    assert json.loads(json.dumps(rec.to_dict()))["rows"][0]["plan"] == rec.best.plan.to_dict()


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


def test_quality_goals_meet_the_size_ratio_with_the_smallest_ratio():
    model, data = cnn()
    bench = wb.Workbench(model, data)
    rec = recommend(bench, "accuracy", 1.5, strategies=["global-magnitude", "structured-l1", "2:4"], repeats=1)
    within = [r for r in rec.rows if r.meets_budget]
    assert {r.name for r in within} >= {"global-magnitude", "structured-l1"}
    for r in within:
        assert r.size_ratio >= 1.5
        if r.family != "N:M":  # 2:4 fixes its ratio; the others bisect onto the budget, not far past it
            assert r.size_ratio < 1.5 * 1.05
    assert [r.drop for r in within] == sorted(r.drop for r in within)  # the most accurate first
    assert (
        "least accuracy lost" in rec.best.reason and f"{rec.best.size_ratio:.2f}x fewer parameters" in rec.best.reason
    )


def test_robustness_goal_ranks_by_accuracy_under_attack():
    model, data = wb.demo.load("digits-mlp")
    bench = wb.Workbench(model, data)
    rec = recommend(bench, "robustness", 1.5, strategies=["global-magnitude", "structured-l1", "2:4"], repeats=1)
    assert 0.0 <= rec.robust_now <= rec.metric_now
    within = [r for r in rec.rows if r.meets_budget]
    assert within and [r.robust_accuracy for r in within] == sorted((r.robust_accuracy for r in within), reverse=True)
    b = rec.best
    assert f"FGSM (eps 0.1) accuracy {rec.robust_now:.1%} -> {b.robust_accuracy:.1%}" in b.reason


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"goal": "speed"}, "unknown goal 'speed'.*latency"),
        ({"goal": "latency", "budget": -0.1}, "largest metric drop"),
        ({"goal": "accuracy", "budget": 0.5}, "size ratio you need"),
        ({"goal": "size", "budget": float("nan")}, "finite number"),
        ({"device": "tpu"}, "device must be 'cpu' or 'cuda'"),
        ({"strategies": ["global-magnitud"]}, "global-magnitude"),
        ({"strategies": []}, "strategies is empty"),
        ({"finetune": -1}, "epochs >= 0"),
        ({"timer": "gpu"}, "timer must be"),
    ],
)
def test_bad_input_is_refused_before_any_work(kwargs, match):
    model, data = cnn()
    bench = wb.Workbench(model, data)
    with pytest.raises(RecommendationError, match=match):
        recommend(bench, **kwargs)


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


def test_strategies_registry_and_guide_markdown():
    assert available_strategies() == list(STRATEGIES) and "2:4" in STRATEGIES
    model, data = wb.demo.load("digits-mlp")
    bench = wb.Workbench(model, data)
    rec = recommend(bench, "latency", 0.01, strategies=["global-magnitude", "structured-l1"], repeats=1)
    md = guide_markdown(["digits-mlp"], results={("digits-mlp", "latency", "cpu"): rec}, questions=[("latency", "cpu")])
    assert md.startswith("## Which pruning should I use?")
    assert "| faster inference on a CPU, at most 1.0 points of accuracy lost |" in md
    assert f"| {rec.best.strategy} | {STRATEGIES[rec.best.name].rule} | 1 of 1 models |" in md
    assert f"mlp: {rec.best.strategy} {rec.best.speedup:.2f}x" in md
    assert "wb.recommend" in md and "wb.ui.guide" in md


def test_a_loss_metric_is_lower_is_better():
    model, data = wb.demo.load("digits-mlp")
    bench = wb.Workbench(model, data, metric="loss")
    rec = recommend(bench, "size", 0.05, strategies=["global-magnitude", "2:4"], repeats=1)
    assert rec.metric_name == "loss" and rec.budget_text == "loss at most 0.05 worse"
    for r in rec.rows:
        assert r.drop == pytest.approx(r.metric - rec.metric_now)  # a higher loss is a drop
        assert r.meets_budget == (r.drop <= 0.05 + 1e-12)
        assert f"loss {rec.metric_now:.4f} -> {r.metric:.4f}" in r.reason


def test_sensitivity_allocated_weights_do_not_strip_layers():
    # its allocation came from first-order Taylor estimates alone, which predicted loss drops for whole conv
    # layers of the trained CNN: the candidate fell to chance accuracy (9.7%) at 10-20% of the weights
    model, data = cnn()
    bench = wb.Workbench(model, data.val, train=data.train)  # as in the README's quick start: estimates on data.val
    rec = recommend(bench, "latency", 0.01, strategies=["allocated-weight"], repeats=1)
    row = rec.rows[0]
    # was 9.7% accuracy: an 89-point drop; shipped weights: 30% at a 0.8-point drop
    assert row.ratio >= 0.1 and row.drop < 0.05, (row.ratio, row.metric)
