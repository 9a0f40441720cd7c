"""training/_procedure.py: what every training procedure does around its body: the body's changes become one
history step that undoes bitwise; an error puts every tensor back bitwise and records nothing; a stop records the
state reached, says so and warns; schedules scale a plan's ratios."""

import pytest
import torch
from conftest import assert_bitwise, snapshot
from torch import nn

import workbench as wb
from workbench.training._procedure import final_plan, plan_at, prune_step, run_procedure

pytestmark = pytest.mark.usefixtures("one_thread")


def _bench():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    data = [(torch.randn(8, 4), torch.randint(0, 3, (8,)))]
    return model, wb.Workbench(model, data)


def _body(fail=None):
    def body(view, curves, progress, info):
        with torch.no_grad():
            for p in view.model.parameters():
                p.add_(0.5)  # training moves every weight
        prune_step_count = view.add_({"0.weight": torch.ones(6, 4, dtype=torch.bool).tril()})  # 1+2+3+4+4+4 = 18
        info["pruned"] = prune_step_count
        curves.epoch.append(1.0)
        curves.done = 1.0
        progress.step(loss=0.1)
        if fail is not None:
            raise fail

    return body


def test_the_body_becomes_one_step_that_undoes_bitwise():
    model, bench = _bench()
    before = snapshot(model)
    seen = []
    res = run_procedure(
        bench, "test", "test run", _body(), data=None, seed=3, progress=lambda d, t: seen.append((d, t)), total_steps=1
    )
    assert res.kind == "test" and res.label == "test run" and not res.stopped and res.entry == 1
    assert res.info["seed"] == 3 and res.info["pruned"] == 18 and seen == [(1, 1)]
    assert bench.store.position == 1 and bench.history[-1].kind == "test"
    assert (model[0].weight[torch.ones(6, 4, dtype=torch.bool).tril()] == 0).all()
    trained = snapshot(model)
    bench.undo()
    assert_bitwise(model, before)
    bench.redo()
    assert_bitwise(model, trained)


def test_an_error_in_the_body_puts_every_tensor_back_and_records_nothing():
    model, bench = _bench()
    before = snapshot(model)
    with pytest.raises(RuntimeError, match="boom"):
        run_procedure(bench, "test", "x", _body(RuntimeError("boom")), data=None, seed=0, progress=False, total_steps=1)
    assert_bitwise(model, before)
    assert bench.store.position == 0 and len(bench.history) == 1


def test_a_stop_records_the_state_reached_and_says_so():
    model, bench = _bench()
    before = snapshot(model)
    with pytest.warns(wb.WorkbenchWarning, match=r"test stopped after 1\.00 epochs; the state reached is recorded"):
        res = run_procedure(
            bench, "test", "run", _body(KeyboardInterrupt()), data=None, seed=0, progress=False, total_steps=1
        )
    assert res.stopped and res.label == "run stopped at epoch 1.00" and bench.store.position == 1
    bench.undo()
    assert_bitwise(model, before)


def test_schedules_scale_every_ratio_of_a_plan():
    plan = wb.Plan({"0": wb.LayerPlan(0.8, "neuron", "l1")}, default=wb.LayerPlan(0.4), exclude=["2"])
    half = plan_at(plan, lambda r: r / 2)
    assert half.layers["0"] == wb.LayerPlan(0.4, "neuron", "l1") and half.default.ratio == pytest.approx(0.2)
    assert half.exclude == plan.exclude and half.scope == plan.scope
    assert final_plan(plan, 0.9, "magnitude") is plan
    assert final_plan(None, 0.9, "l2") == wb.Plan.global_(0.9, criterion="l2")


def test_a_prune_step_counts_only_new_weights():
    model, bench = _bench()
    from workbench.training._state import MaskView

    view = MaskView(model, bench.store)
    first = prune_step(bench, view, wb.Plan.uniform(0.5))
    assert first == sum(round(0.5 * model.get_parameter(p).numel()) for p in ("0.weight", "2.weight"))
    assert prune_step(bench, view, wb.Plan.uniform(0.5)) == 0  # the same plan again: nothing new
