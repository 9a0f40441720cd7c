"""analysis/easing.py: suggest_easing names the layer whose pruning costs the most agreement with the dense model
(putting back a structured layer's coupled slices too) and leaves the model and its history bitwise unchanged."""

import copy

import pytest
import torch
from conftest import assert_bitwise, snapshot
from conftest import val_batches as load

import workbench as wb

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is fastest and steadiest


def test_suggest_easing_names_the_layer_that_costs_agreement_and_changes_nothing():
    model, data, batches = load("digits-lstm")
    bench = wb.Workbench(model, data)
    bench.apply(wb.Plan.global_(0.85))
    before, history = snapshot(model), bench.history_table()
    sug = wb.suggest_easing(bench, batches, top=1)
    assert_bitwise(model, before)
    assert bench.history_table() == history
    assert sug.baseline == pytest.approx(wb.monitor(bench, 0, batches).agreement)
    # its recurrent weights carry the sequence: putting them back recovers the most (shipped weights: +0.804 vs
    # +0.013 for fc, from a baseline of 0.175)
    assert sug.top == ("lstm",)
    row = sug.rows[0]
    assert row["layer"] == "lstm" and row["recovered"] > 0.3 and row["agreement"] > sug.baseline
    assert row["suggested_ratio"] == pytest.approx(row["ratio"] / 2)
    assert sug.plan.layers["lstm"].ratio == pytest.approx(row["suggested_ratio"])
    # applying the suggestion (from the dense model) does agree more than the current state
    bench.reset()
    bench.apply(sug.plan.with_ratio("fc", bench.history[1].layers["fc"]["ratio"]))
    assert wb.monitor(bench, 0, batches).agreement > sug.baseline  # shipped weights: 0.933 vs 0.175
    assert "ease its ratio" in str(sug)


def _agreement(model, batches, ref_preds) -> float:
    with torch.inference_mode():
        preds = torch.cat([model(x).argmax(1) for x, _ in batches])
    return float((preds == ref_preds).float().mean())


def test_suggest_easing_on_structured_pruning_restores_coupled_slices():
    model, data, batches = load("digits-cnn")
    dense = snapshot(model)
    model.eval()
    with torch.inference_mode():
        ref_preds = torch.cat([model(x).argmax(1) for x, _ in batches])
    bench = wb.Workbench(model, data)
    bench.apply(wb.Plan.uniform(0.3, granularity="filter", criterion="l1"))
    before = snapshot(model)
    sug = wb.suggest_easing(bench, batches)
    assert_bitwise(model, before)
    rows = {r["layer"]: r for r in sug.rows}
    assert set(rows) == {t.name for t in bench.targets if any(p in bench.masks for p in t.param_names())}
    # which layers recover agreement is a property of the weights (on the shipped ones none does at 30%: restoring
    # one layer's filters into a model whose other layers lost theirs moves predictions further); the rule is not
    assert sug.top == tuple(r["layer"] for r in sug.rows[:3] if r["recovered"] > 0)
    # putting back features.3 restores its pruned filters, their BatchNorm channels and the next conv's inputs
    dead = bench.masks["features.3.weight"].flatten(1).all(1)
    by_hand = copy.deepcopy(model)
    with torch.no_grad():
        conv, bn, nxt = by_hand.features[3], by_hand.features[4], by_hand.features[7]
        for param, name, index in (
            (conv.weight, "features.3.weight", dead),
            (conv.bias, "features.3.bias", dead),
            (bn.weight, "features.4.weight", dead),
            (bn.bias, "features.4.bias", dead),
        ):
            param[index] = dense[name][index]
        nxt.weight[:, dead] = dense["features.7.weight"][:, dead]
        alone = copy.deepcopy(model)  # the filters alone: their BatchNorm channels still output exactly zero
        alone.features[3].weight[dead] = dense["features.3.weight"][dead]
    # shipped weights: 0.617 with the coupled slices, 0.633 (the baseline) without, so the two are told apart
    assert rows["features.3"]["agreement"] == _agreement(by_hand, batches, ref_preds)
    assert _agreement(alone, batches, ref_preds) == sug.baseline
    assert rows["features.3"]["granularity"] == "filter" and rows["features.3"]["suggested_ratio"] == pytest.approx(
        0.15
    )


def test_suggest_easing_puts_a_structured_layer_back_to_the_dense_model():
    model, data, batches = load("digits-cnn")
    bench = wb.Workbench(model, data)
    bench.apply(wb.Plan({"features.7": wb.LayerPlan(0.5, "filter", "l1")}))
    before = snapshot(model)
    sug = wb.suggest_easing(bench, batches, top=1)
    assert_bitwise(model, before)
    row = next(r for r in sug.rows if r["layer"] == "features.7")
    assert row["agreement"] == 1.0  # the only pruned layer, with its coupled slices, restored: the dense model
    assert sug.baseline < 1.0  # so putting it back recovers something; shipped weights: 0.829 (41 of 240 differ)
    assert sug.top == ("features.7",)
    lp = sug.plan.layers["features.7"]
    assert lp.granularity == "filter" and lp.criterion == "l1" and lp.ratio == pytest.approx(0.25)
