"""ui/plan_editor.py: the plan editor's rows, plan-wide buttons (Uniform, Global, Allocate, JSON) and coupled
sliders, driven headless and synchronously; block and kind names of a transformer's layers."""

import json

import numpy as np
import pytest
from zoo import make

import workbench as wb
from workbench.errors import WorkbenchError
from workbench.ui.plan_editor import MAX_RATIO, block_of, kind_of

pytest.importorskip("ipywidgets")
pytest.importorskip("matplotlib")

SYNC = {"threaded": False, "scheduler": lambda delay, fn: fn()}


def dash(bench):
    return bench.show(new=True, **SYNC)


def test_block_and_kind_names():
    assert block_of("model.layers.11.mlp.down_proj") == "model.layers.11"
    assert kind_of("model.layers.11.mlp.down_proj") == "mlp.down_proj"
    assert block_of("lm_head") == "" and kind_of("lm_head") == "lm_head"
    assert block_of("encoder.layer.3.attention.self.query") == "encoder.layer.3"


def test_structured_sliders_move_coupled_layers_together():
    model, data = make("rescat")
    bench = wb.Workbench(model, data)
    d = dash(bench)
    a = d.editor.rows["a"]
    a.granularity.value = "filter"
    a.slider.value = 0.5
    for name in ("stem.0", "b", "dw"):  # coupled by the residual add, the concat and the depthwise conv
        r = d.editor.rows[name]
        assert r.slider.value == 0.5 and r.granularity.value == "filter", name
    d.actions.apply_button.click()
    assert bench.store.position == 1 and "error" not in d.log.widget.value


def test_uniform_global_allocate_and_json(demo_models):
    model, data = demo_models["digits-cnn"]
    bench = wb.Workbench(model, data)
    d = dash(bench)
    d.editor.uniform_ratio.value = 0.3
    d.editor.uniform_button.click()
    assert d.editor.rows["features.0"].slider.value == 0.3 and d.editor.rows["features.1"].slider.value == 0
    d.editor.uniform_ratio.value = 1.7  # out of range: clamped with a message
    d.editor.uniform_button.click()
    assert d.editor.rows["features.0"].slider.value == 0.99 and any("clamped" in m for _, m in d.log.lines)
    d.editor.uniform_ratio.value = 0.6
    d.editor.global_button.click()
    shares = {n: r.slider.value for n, r in d.editor.rows.items() if r.slider.value > 0}
    assert len(set(np.round(list(shares.values()), 3))) > 1  # one threshold, different shares per layer
    d.actions.apply_button.click()
    assert bench.report(evaluate=False).sparsity == pytest.approx(0.6, abs=0.01)
    bench.reset()
    d.editor.budget.value = 0.5
    d.editor.budget_target.value = "flops"
    d.editor.rows["features.0"].slider.value = 0.0
    d.editor.allocate_button.click()
    assert bench.last_allocation.achieved >= 0.5 and any(r.slider.value > 0 for r in d.editor.rows.values())
    d.editor.save_button.click()
    saved = json.loads(d.editor.json.value)
    d.editor.uniform_ratio.value = 0.1
    d.editor.uniform_button.click()
    d.editor.json.value = json.dumps(saved)
    d.editor.load_button.click()
    assert d.editor.plan().to_dict() == wb.Plan.from_dict(saved).to_dict()
    d.editor.json.value = '{"layers": {"nope": 0.5}}'
    d.editor.load_button.click()
    assert "nope" in d.log.last


def test_set_plan_names_layers_that_are_not_targets_and_changes_no_slider():
    model, data = make("rescat")
    d = dash(wb.Workbench(model, data))
    d.editor.rows["a"].slider.value = 0.3
    with pytest.raises(WorkbenchError, match=r"not targets here: \['nope'\]"):
        d.editor.set_plan(wb.Plan({"nope": wb.LayerPlan(0.5), "a": wb.LayerPlan(0.6)}))
    assert d.editor.rows["a"].slider.value == 0.3
    d.editor.set_ratio("a", 1.5)  # beyond what a slider allows: the highest ratio it has
    assert d.editor.rows["a"].slider.value == MAX_RATIO
    d.editor.set_ratio("a", -1)
    assert d.editor.rows["a"].slider.value == 0 and d.editor.plan() == wb.Plan({})
