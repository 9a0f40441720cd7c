"""monitor: agreement, accuracy and confidence drift of a pruned model vs its reference per batch, alerts, the easing
feedback (model bitwise unchanged), the live plot, history export, bad input; on every demo model."""

import copy
import json
import warnings

import matplotlib
import pytest
import torch
from conftest import assert_bitwise, assert_plain, snapshot

import workbench as wb
from workbench.analysis.states import StateError

matplotlib.use("Agg")


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is fastest and steadiest


def load(name="digits-cnn"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, data = wb.demo.load(name)
    x, y = data.val.dataset.tensors
    batches = [(x[i : i + 60], y[i : i + 60]) for i in range(0, 240, 60)]
    return model, data, batches


def test_a_model_agrees_with_itself():
    model, data, batches = load()
    res = wb.monitor(model, model, batches, threshold=0.99)
    assert res.agreement == 1.0 and res.drift == 0.0 and not res.alerts
    assert res.totals["accuracy_pruned"] == res.totals["accuracy_reference"]
    assert [r["n"] for r in res.records] == [60] * 4 and res.totals["n"] == 240
    bench = wb.Workbench(model, data)
    assert wb.monitor(bench, "dense", batches).agreement == 1.0  # at entry 0, the reference is the model itself


def test_heavy_pruning_lowers_agreement_and_the_model_is_unchanged():
    model, data, batches = load()
    bench = wb.Workbench(model, data)
    dense_out = model(batches[0][0]).detach()
    bench.apply(wb.Plan.global_(0.85))
    before = snapshot(model)
    res = wb.monitor(bench, 0, batches)
    assert_bitwise(model, before)  # the dense reference was visited on the live model and left
    assert_plain(model)
    assert bench.store.position == 1
    assert res.agreement < 0.5  # shipped weights: 0.096
    assert res.totals["accuracy_reference"] > 0.95 > res.totals["accuracy_pruned"]  # shipped: 1.0 and 0.096
    # by hand: the first batch's agreement with the dense model's predictions
    pruned = model(batches[0][0]).argmax(1)
    assert res.records[0]["agreement"] == pytest.approx(float((pruned == dense_out.argmax(1)).float().mean()))
    with torch.no_grad():
        conf = model(batches[0][0]).softmax(1).max(1).values.mean() - dense_out.softmax(1).max(1).values.mean()
    assert res.records[0]["drift"] == pytest.approx(float(conf), abs=1e-5)
    assert res.reference == "dense"
    json.dumps(res.to_dict())
    assert "agreement" in res.table()


def test_alert_fires_once_per_crossing_of_the_threshold():
    model, data, batches = load()
    bench = wb.Workbench(model, data)
    bench.apply(wb.Plan.global_(0.3))  # mild: agrees on most samples
    seen = []
    mon = wb.Monitor(bench, "dense", threshold=0.9, on_alert=seen.append)
    for x, y in batches[:2]:
        mon.update(x, y)
    assert not seen and all(not r["below"] for r in mon.records)
    bench.apply(wb.Plan.global_(0.85))  # the model degrades while being monitored
    for x, y in batches[2:]:
        mon.update(x, y)
    # shipped weights: batches 0-1 agree 0.983 / 1.0 at 30%, batches 2-3 agree 0.100 / 0.117 at 85%
    assert len(seen) == 1 and seen[0]["batch"] == 2 and seen[0]["agreement"] < 0.9
    assert "fell below 0.900" in seen[0]["message"]
    assert [r["below"] for r in mon.records] == [False, False, True, True]
    res = mon.result
    assert res.alerts == tuple(seen)
    n = sum(r["n"] for r in res.records)
    assert res.agreement == pytest.approx(sum(r["agreement"] * r["n"] for r in res.records) / n)
    assert res.records[-1]["running_agreement"] == pytest.approx(res.agreement)


def test_incremental_equals_stream_and_labels_are_optional():
    model, data, batches = load()
    bench = wb.Workbench(model, data)
    bench.apply(wb.Plan.global_(0.8))
    res = wb.monitor(bench, "dense", batches)
    mon = wb.Monitor(bench, 0)
    for x, _ in batches:
        mon.update(x)
    inc = mon.result
    assert inc.agreement == pytest.approx(res.agreement) and inc.drift == pytest.approx(res.drift)
    assert inc.totals["accuracy_pruned"] is None and inc.records[0]["accuracy_pruned"] is None
    bare = wb.monitor(bench, 0, [x for x, _ in batches])  # bare input tensors
    assert bare.agreement == pytest.approx(res.agreement)


def test_wrong_shapes_and_references_are_named():
    model, data, batches = load()
    bench = wb.Workbench(model, data)
    with pytest.raises(wb.DataError, match=r"shape \(60, 64\).*expect \(batch, 1, 8, 8\)"):
        wb.monitor(bench, "dense", [(batches[0][0].reshape(60, 64), batches[0][1])])
    with pytest.raises(wb.DataError, match=r"labels of shape \(59,\)"):
        wb.Monitor(model, model).update(batches[0][0], batches[0][1][:59])
    mon = wb.Monitor(model, model)  # a plain module: the first batch fixes the shape
    mon.update(batches[0][0])
    with pytest.raises(wb.DataError, match=r"samples of shape \(1, 8, 8\)"):
        mon.update(torch.randn(4, 1, 9, 9))
    with pytest.raises(wb.DataError, match=r"shape \(4, 3\) does not fit"):
        wb.Monitor(model, model).update(torch.randn(4, 3))
    with pytest.raises(wb.WorkbenchError, match="needs a Workbench"):
        wb.Monitor(model, 0)
    with pytest.raises(StateError, match="does not exist"):
        wb.Monitor(bench, 5)
    with pytest.raises(wb.WorkbenchError, match="'dense'"):
        wb.Monitor(bench, "original")
    with pytest.raises(wb.WorkbenchError, match=r"threshold.*\[0, 1\]"):
        wb.Monitor(bench, 0, threshold=1.5)
    with pytest.raises(wb.DataError, match="no batches"):
        wb.monitor(bench, 0, [])
    with pytest.raises(wb.DataError, match=r"expects \(batch, 1, 8, 8\)"):
        wb.suggest_easing(bench, [torch.randn(3, 64)])


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


@pytest.mark.parametrize("name", wb.demo.available())
def test_every_demo_model(name):
    model, data, batches = load(name)
    bench = wb.Workbench(model, data)
    bench.apply(wb.Plan.global_(0.8))
    before = snapshot(model)
    res = wb.monitor(bench, "dense", batches, threshold=0.95)
    # one alert: every batch stays below 0.95 (shipped weights: the highest batch is the MLP's 0.800)
    assert res.agreement < 1.0 and len(res.alerts) == 1
    sug = wb.suggest_easing(bench, batches[:2], top=2)
    assert_bitwise(model, before)
    # shipped weights: the best layer recovers +0.117 (resnet) to +0.817 (lstm) of agreement
    assert 1 <= len(sug.top) <= 2 and sug.rows[0]["recovered"] > 0


def test_plot_monitor_and_live_update():
    import matplotlib.pyplot as plt

    model, data, batches = load()
    bench = wb.Workbench(model, data)
    bench.apply(wb.Plan.global_(0.85))
    mon = wb.Monitor(bench, 0, threshold=0.6)
    mon.update(*batches[0])
    fig, ax = plt.subplots()
    art = wb.viz.plot_monitor(mon.result, ax=ax)
    assert art["threshold"].get_ydata()[0] == 0.6 and len(art["batch"].get_xdata()) == 1
    for x, y in batches[1:]:
        mon.update(x, y)
        wb.viz.update_monitor(art, mon.result)
    # every batch is below 0.6 (shipped weights: at most 0.117)
    assert len(art["batch"].get_xdata()) == 4 and len(art["alerts"].get_xdata()) == 4
    assert art["drift"].get_ydata().tolist() == pytest.approx(mon.result.series("drift").tolist())
    plt.close(fig)


def test_history_table_and_export(tmp_path):
    model, data, _ = load()
    bench = wb.Workbench(model, data)
    bench.apply(wb.Plan.global_(0.5))
    bench.apply(wb.Plan.uniform(0.3, granularity="filter", criterion="l1"), label="filters")
    bench.undo()
    table = bench.history_table()
    assert [r["index"] for r in table] == [0, 1, 2]
    assert [r["active"] for r in table] == [True, True, False] and [r["current"] for r in table] == [False, True, False]
    assert table[0]["label"] == "dense" and table[0]["accuracy"] == pytest.approx(bench.history[0].metrics["accuracy"])
    assert table[2]["label"] == "filters" and table[2]["plan"]["default"]["granularity"] == "filter"
    assert table[1]["sparsity"] == pytest.approx(0.5, abs=0.01) and table[1]["metric_name"] == "accuracy"
    assert table[1]["layers"]["features.0"]["ratio"] == 0.5
    path = bench.export_history(tmp_path / "history.json")
    doc = json.loads(path.read_text())
    assert doc["position"] == 1 and doc["model"] == bench.name and doc["history"] == table
