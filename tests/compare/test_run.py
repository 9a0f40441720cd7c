"""compare/run.py: strategies side by side from one starting point; the model ends bitwise as it started (also on
errors and interrupts), rows, plans and callables as strategies, bad input naming the valid choices."""

import copy
import json

import pytest
from conftest import assert_bitwise, assert_plain, snapshot

import workbench as wb
from workbench.compare import StrategyError

from .conftest import DEFAULT

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is fastest and steadiest


def test_rows_are_strategies_times_sparsities_and_the_model_is_bitwise_unchanged(small):
    model, _, val, _ = small()
    before = snapshot(model)
    res = wb.compare(model, val, list(DEFAULT), [0.3, 0.6], backend=None)
    assert_bitwise(model, before)
    assert_plain(model)
    assert len(res.rows) == len(DEFAULT) * 2
    assert [(r["strategy"], r["sparsity"]) for r in res.rows] == [(s, r) for s in DEFAULT for r in (0.3, 0.6)]
    dense = wb.evaluate(model, val)["accuracy"]
    assert res.baseline["metric"] == dense and res.baseline["params"] == sum(p.numel() for p in model.parameters())
    for r in res.rows:
        assert r["error"] is None
        assert 0.0 <= r["metric"] <= 1.0 and r["accuracy"] == r["metric"]
        assert r["params"] < res.baseline["params"] and r["flops"] < res.baseline["flops"]
        assert r["delta"] == pytest.approx(r["metric"] - dense)
        assert r["seconds"] >= 0 and r["size_bytes"] > 0
        assert r["latency_ms"] is None and r["speedup"] is None  # backend=None: not timed
    for s in ("magnitude", "random", "sensitivity"):  # unstructured at the same budget remove the same share
        assert res.row(s, 0.6)["achieved"] == pytest.approx(res.row("magnitude", 0.6)["achieved"], abs=0.01)
    # the structured ones remove coupled inputs too: more than their unit ratio
    assert res.row("filter-l1", 0.3)["achieved"] > 0.3
    json.dumps(res.to_dict())  # plain data
    text = res.table()
    assert all(s in text for s in DEFAULT) and "start" in text


def test_a_bench_keeps_its_state_and_history_including_redoable_steps(small):
    model, _, val, _ = small()
    bench = wb.Workbench(model, val)
    bench.apply(wb.Plan.global_(0.3))
    bench.apply(wb.Plan.global_(0.5))
    bench.undo()  # position 1, step 2 can be redone
    before, history = snapshot(model), bench.history_table()
    res = wb.compare(bench, None, ["magnitude", "filter-l1"], [0.6], backend=None)
    assert_bitwise(model, before)
    assert bench.store.position == 1 and bench.history_table() == history
    assert res.baseline["achieved"] == pytest.approx(0.3, abs=0.01)  # the starting point is the current state
    bench.redo()
    assert bench.current.sparsity == pytest.approx(0.5, abs=0.01)


def test_a_raising_strategy_leaves_the_model_bitwise_unchanged(small):
    model, _, val, _ = small()
    bench = wb.Workbench(model, val)
    before = snapshot(model)

    def breaks(b, sparsity):
        b.apply(wb.Plan.global_(sparsity))  # a step is made, then the strategy fails
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        wb.compare(bench, None, ["magnitude", breaks, "random"], [0.5], backend=None)
    assert_bitwise(model, before)
    assert bench.store.position == 0 and len(bench.history) == 1
    res = wb.compare(bench, None, ["magnitude", breaks, "random"], [0.5], backend=None, on_error="record")
    assert_bitwise(model, before)
    assert [r["error"] is None for r in res.rows] == [True, False, True]
    assert "boom" in res.rows[1]["error"] and res.rows[1]["metric"] is None
    assert "error: RuntimeError" in res.table()


def test_an_interrupt_leaves_the_model_bitwise_unchanged(small):
    model, _, val, _ = small()
    before = snapshot(model)
    calls = []

    def stop(done, total):
        calls.append(done)
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        wb.compare(model, val, ["magnitude", "filter-l1"], [0.4, 0.7], backend=None, progress=stop)
    assert calls == [1, 2]
    assert_bitwise(model, before)


def test_magnitude_beats_random_one_shot_and_fine_tuned_rows_are_undone_bitwise(small):
    model, _, val, train = small()
    bench = wb.Workbench(model, val, train=train)
    before = snapshot(model)
    one_shot = wb.compare(bench, None, ["magnitude", "random"], [0.7], backend=None)
    # shipped weights: 0.850 vs 0.106 on the 180 digits
    assert one_shot.row("magnitude", 0.7)["metric"] > one_shot.row("random", 0.7)["metric"] + 0.2
    # which criterion recovers more with fine-tuning is decided by the training run: benchmarks/trained_claims.py
    # measures it; here only what holds by construction
    res = wb.compare(bench, None, ["magnitude", "random"], [0.8], backend=None, finetune={"epochs": 2, "lr": 3e-3})
    assert_bitwise(model, before)  # fine-tuning steps are undone bitwise too
    mag, rnd = res.row("magnitude", 0.8), res.row("random", 0.8)
    assert mag["achieved"] == pytest.approx(rnd["achieved"], abs=0.01)
    for r in (mag, rnd):
        assert 0.0 <= r["metric"] <= 1.0 and r["error"] is None
    again = wb.compare(bench, None, ["magnitude"], [0.8], backend=None, finetune={"epochs": 2, "lr": 3e-3})
    assert again.row("magnitude", 0.8)["metric"] == mag["metric"]  # the fine-tune is seeded: the same run again


def test_plans_callables_and_labels(small):
    model, _, val, _ = small()
    before = snapshot(model)
    template = wb.Plan.uniform(0.5, granularity="filter", criterion="l1")
    fixed = wb.Plan({"features.3": wb.LayerPlan(0.5, "filter", "l1")})

    def half_global(bench, sparsity):
        return wb.Plan.global_(sparsity / 2)

    res = wb.compare(model, val, [("filters", template), ("one layer", fixed), half_global], [0.25, 0.5], backend=None)
    assert_bitwise(model, before)
    assert [(r["strategy"], r["sparsity"]) for r in res.rows] == [
        ("filters", 0.25),
        ("filters", 0.5),
        ("one layer", None),  # a plan of explicit layers is applied as it is, once
        ("half_global", 0.25),
        ("half_global", 0.5),
    ]
    assert res.row("half_global", 0.5)["achieved"] == pytest.approx(0.25, abs=0.01)
    assert res.row("filters", 0.25)["achieved"] < res.row("filters", 0.5)["achieved"]
    with pytest.raises(StrategyError, match="must return a Plan or None"):
        wb.compare(model, val, [lambda b, s: "nope"], [0.5], backend=None)
    with pytest.raises(StrategyError, match="listed twice"):
        wb.compare(model, val, ["magnitude", "magnitude"], [0.5], backend=None)
    assert_bitwise(model, before)


def test_bad_input_names_the_valid_choices(small):
    model, _, val, _ = small()
    before = snapshot(model)
    with pytest.raises(StrategyError, match=r"no strategies to compare.*magnitude"):
        wb.compare(model, val, [], [0.5])
    with pytest.raises(StrategyError) as e:
        wb.compare(model, val, ["magnitud"], [0.5])
    msg = str(e.value)
    assert "'magnitud'" in msg and all(s in msg for s in DEFAULT) and "Did you mean 'magnitude'" in msg
    for bad in (1.0, -0.1, 1.5, float("nan")):
        with pytest.raises(wb.PlanError, match=r"\[0, 1\)"):
            wb.compare(model, val, ["magnitude"], [0.5, bad])
    with pytest.raises(StrategyError, match="at least one"):
        wb.compare(model, val, ["magnitude"], [])
    with pytest.raises(StrategyError, match="backend must be one of"):
        wb.compare(model, val, ["magnitude"], [0.5], backend="fast")
    with pytest.raises(StrategyError, match=r"nn\.Module or a Workbench"):
        wb.compare("model", val, ["magnitude"], [0.5])
    with pytest.raises(StrategyError, match="finetune needs training data"):
        wb.compare(model, val, ["magnitude"], [0.5], finetune=1)
    assert_bitwise(model, before)


def test_a_bench_state_compares_like_the_bench_and_keeps_its_history(small):
    model, _, val, _ = small()
    twin = copy.deepcopy(model)
    a, b = wb.Workbench(model, val), wb.Workbench(twin, val)
    for bench in (a, b):
        bench.apply(wb.Plan.global_(0.3))
        bench.apply(wb.Plan.global_(0.5))
        bench.undo()  # position 1, step 2 can be redone
    before, history = snapshot(twin), b.history_table()
    seen = []

    def itself(state, sparsity):  # a callable gets what compare was given: here the State
        entry = state.apply(wb.Plan.uniform(sparsity, granularity="filter"), label="itself", evaluate=False)
        seen.append((type(state).__name__, entry.index, bool(entry.layers), len(state.history)))

    res_a = wb.compare(a, None, ["magnitude", "filter-l1"], [0.6], backend=None)
    res_b = wb.compare(b.state, None, ["magnitude", "filter-l1", itself], [0.6], backend=None)
    assert_bitwise(twin, before)
    assert b.store.position == 1 and b.history_table() == history
    drop = ("seconds",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in res_a.rows] == [
        {k: v for k, v in r.items() if k not in drop} for r in res_b.rows[:2]
    ]
    assert seen == [("State", 2, True, 3)]  # a step on top of the start, with its per-layer plans, then dropped
    assert res_b.row("itself", 0.6)["error"] is None
