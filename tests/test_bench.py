import copy
import math
import warnings

import pytest
import torch
from conftest import assert_bitwise, assert_plain, snapshot
from zoo import ZOO, make

import workbench as wb
from workbench.errors import (
    CriterionError,
    DataError,
    GranularityError,
    ModelError,
    PlanError,
    TargetError,
    WorkbenchWarning,
)


def quiet_bench(model, data, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WorkbenchWarning)
        return wb.Workbench(model, data, **kw)


@pytest.mark.parametrize("name", ZOO)
def test_attaching_leaves_the_model_bitwise_unchanged_and_plain(name):
    model, data = make(name)
    model.train()
    model.get_submodule(next(n for n, _ in model.named_modules() if n)).eval()  # mixed flags survive
    flags = {n: m.training for n, m in model.named_modules()}
    snap = snapshot(model)
    b = quiet_bench(model, data)
    b.evaluate()
    assert_bitwise(model, snap)
    assert_plain(model)
    assert {n: m.training for n, m in model.named_modules()} == flags


def test_evaluate_reports_metric_loss_and_per_class():
    model, data = make("rescat")
    b = wb.Workbench(model, data)
    r = b.evaluate()
    x = torch.cat([d[0] for d in data])
    y = torch.cat([d[1] for d in data])
    with torch.no_grad():
        logits = model(x)
    assert r["accuracy"] == pytest.approx((logits.argmax(1) == y).float().mean().item())
    assert r["loss"] == pytest.approx(torch.nn.functional.cross_entropy(logits, y).item(), rel=1e-5)
    assert r["metric"] == r["accuracy"] and r["metric_name"] == "accuracy" and r["n"] == 64
    assert len(r["per_class"]) == 5
    for c in range(5):
        sel = y == c
        want = (logits.argmax(1)[sel] == c).float().mean().item() if sel.any() else math.nan
        assert r["per_class"][c] == pytest.approx(want, nan_ok=True)
    assert wb.Workbench(model, data, metric="loss").evaluate()["metric"] == r["loss"]


def test_callable_metric_gets_the_model_in_eval_mode():
    model, data = make("rescat")
    model.train()
    seen = []

    def agreement(m, d):
        seen.append(m.training)
        return 0.25

    r = wb.Workbench(model, data, metric=agreement).evaluate()
    assert r["metric"] == 0.25 and r["metric_name"] == "agreement" and seen == [False]
    assert model.training


def test_history_records_each_step_and_undo_redo_move_through_it():
    model, data = make("rescat")
    b = wb.Workbench(model, data)
    e1 = b.apply(wb.Plan.uniform(0.5, granularity="filter", criterion="l1"), label="filters")
    e2 = b.apply(wb.Plan.global_(0.8))
    assert [h.index for h in b.history] == [0, 1, 2]
    assert b.history[0].metrics is not None and b.history[0].label == "dense"
    assert e1.label == "filters" and e1.sparsity < e2.sparsity == pytest.approx(b.report().sparsity)
    assert e2.layers["a"] == {"ratio": 0.8, "granularity": "weight", "criterion": "magnitude"}
    assert b.undo().index == 1 and [h.active for h in b.history] == [True, True, False]
    assert b.redo().index == 2 and b.reset().index == 0 and b.goto(2).index == 2
    assert b.current.metric == e2.metric
    rep = b.report()
    assert rep.dense["metric"] == b.history[0].metric and rep.now["metric"] == e2.metric
    text = str(rep)
    assert "stem.0" in text and "accuracy: dense" in text and rep.to_dict()["steps"] == 2


def test_apply_on_one_model_does_not_touch_another(demo_models):
    (m1, d1), (m2, _) = demo_models["digits-cnn"], demo_models["digits-mlp"]
    other = copy.deepcopy(m1)
    s1, s2, s3 = snapshot(m1), snapshot(m2), snapshot(other)
    b = wb.Workbench(m1, d1.val)
    b.apply(wb.Plan.global_(0.7))
    assert_bitwise(m2, s2)
    assert_bitwise(other, s3)
    b.reset()
    assert_bitwise(m1, s1)


BAD_PLANS = [
    (lambda: wb.Plan({"stem.O": 0.5}), TargetError, r"'stem.O'.*Did you mean"),
    (lambda: wb.Plan({"a": wb.LayerPlan(0.5, "fliter")}), GranularityError, r"'fliter'.*Did you mean 'filter'"),
    (lambda: wb.Plan({"head": wb.LayerPlan(0.5, "neuron")}), GranularityError, r"'head'.*outputs of the model"),
    (lambda: wb.Plan({"head": wb.LayerPlan(0.5, "filter")}), GranularityError, r"'head'.*use 'neuron'|'head'.*conv"),
    (lambda: wb.Plan.uniform(0.5, criterion="magnitud"), CriterionError, r"'magnitud'.*available: .*magnitude"),
    (lambda: wb.Plan.uniform(0.5, include="nope.*"), PlanError, r"'nope.\*' matches no target"),
    (lambda: wb.Plan.global_(0.5, granularity="filter"), PlanError, r"global"),
    (lambda: wb.Plan({"a": wb.LayerPlan(0.5, "filter")}), PlanError, r"'a' shares its channels"),
]


@pytest.mark.parametrize("make_plan, error, match", BAD_PLANS)
def test_bad_plans_raise_clear_errors_and_leave_the_model_untouched(make_plan, error, match):
    model, data = make("rescat")
    b = wb.Workbench(model, data)
    b.apply(wb.Plan.uniform(0.3))
    snap = snapshot(model)
    with pytest.raises(error, match=match):
        b.apply(make_plan())
    assert_bitwise(model, snap)
    assert b.store.position == 1 and len(b.history) == 2


def test_bad_ratio_cannot_even_be_built():
    with pytest.raises(PlanError, match=r"'a'.*\[0, 1\)"):
        wb.Plan.uniform(0.3).with_ratio("a", 1.5)
    with pytest.raises(PlanError, match=r"NaN|nan"):
        wb.Plan.uniform(float("nan"))


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_nan_or_inf_weights_are_named_and_nothing_changes(value):
    model, data = make("rescat")
    b = wb.Workbench(model, data)
    with torch.no_grad():
        model.b.weight[0, 0, 0, 0] = value
    snap = snapshot(model)
    with pytest.raises(ModelError, match=r"'b.weight' contains NaN or inf"):
        b.apply(wb.Plan.uniform(0.5), evaluate=False)
    assert_bitwise(model, snap)
    b.apply(wb.Plan.uniform(0.5, exclude=["b"]), evaluate=False)  # the rest still prunes


def test_data_problems_are_clear():
    model, _ = make("rescat")
    with pytest.raises(DataError, match="no batches"):
        wb.Workbench(model, [])
    with pytest.raises(DataError, match=r"have no labels.*\(inputs, target\) pairs"):
        wb.Workbench(model, [torch.randn(2, 1, 8, 8)])
    b = wb.Workbench(model)  # no data: prune without evaluation
    assert "filter" not in b.targets["a"].granularities
    with pytest.raises(DataError, match="no evaluation data"):
        b.evaluate()
    b.apply(wb.Plan.uniform(0.5))
    assert b.current.metrics is None


def test_data_on_another_device_than_the_model_is_refused():
    model, data = make("rescat")
    meta = [(data[0][0].to("meta"), data[0][1].to("meta"))]
    snap = snapshot(model)
    with pytest.raises(DataError, match="is on meta but the model is on cpu"):
        wb.Workbench(model, meta)
    b = wb.Workbench(model, data)
    with pytest.raises(DataError, match="meta"):
        b.evaluate(meta)
    assert_bitwise(model, snap)


def test_failing_evaluation_after_apply_rolls_the_step_back():
    model, data = make("rescat")
    calls = []

    def metric(m, d):
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("metric broke")
        return 1.0

    b = wb.Workbench(model, data, metric=metric)
    snap = snapshot(model)
    with pytest.raises(RuntimeError, match="metric broke"):
        b.apply(wb.Plan.uniform(0.5))
    assert_bitwise(model, snap)
    assert b.store.position == 0 and len(b.history) == 1


@pytest.mark.parametrize("name", ["digits-mlp", "digits-cnn", "digits-resnet", "digits-lstm", "digits-transformer"])
def test_the_story_on_every_demo_model(demo_models, name):
    model, data = demo_models[name]
    model = copy.deepcopy(model)
    snap = snapshot(model)
    b = wb.Workbench(model, data)
    dense = b.evaluate()["accuracy"]
    structured = [t for t in b.targets if "filter" in t.granularities or "neuron" in t.granularities]
    # the LSTM demo has no structured unit until lstm-unit pruning exists (the sparse-core issue)
    assert structured or name == "digits-lstm", b.targets
    g = "filter" if any("filter" in t.granularities for t in structured) else "neuron" if structured else "weight"
    e1 = b.apply(wb.Plan.uniform(0.5, granularity=g, criterion="l1"))
    e2 = b.apply(wb.Plan.global_(0.8))
    assert 0 < e1.sparsity < e2.sparsity
    assert e2.sparsity == pytest.approx(b.report(evaluate=False).sparsity)
    assert_plain(model)
    b.undo()
    assert b.evaluate()["accuracy"] == e1.metric
    b.reset()
    assert_bitwise(model, snap)
    assert b.evaluate()["accuracy"] == dense


def test_demo_cnn_and_resnet_structure(demo_models):
    b = wb.Workbench(*demo_models["digits-resnet"])
    convs = [t for t in b.targets if t.kind == "conv"]
    assert sum("filter" in t.granularities for t in convs) >= len(convs) // 2, b.targets
    cnn = wb.Workbench(*demo_models["digits-cnn"])
    assert "filter" in cnn.targets["features.0"].granularities
    tr = wb.Workbench(*demo_models["digits-transformer"])
    assert any(t.kind == "attention" for t in tr.targets)


def test_torch_compile_still_works_on_a_pruned_model():
    model, data = make("rescat")
    b = wb.Workbench(model, data)
    b.apply(wb.Plan.uniform(0.5, granularity="filter"))
    x = data[0][0]
    compiled = torch.compile(model, backend="aot_eager")
    torch.testing.assert_close(compiled(x), model(x))


def test_import_workbench_needs_no_display_libraries():
    import subprocess
    import sys

    code = (
        "import sys, workbench as wb; m, d = wb.demo.load('digits-mlp', pretrained=False); "
        "b = wb.Workbench(m, d); b.apply(wb.Plan.uniform(0.5)); "
        "bad = [k for k in sys.modules if k.split('.')[0] in ('matplotlib', 'ipywidgets')]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
