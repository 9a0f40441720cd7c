"""monitor: agreement, accuracy and confidence drift of a pruned model vs its reference per batch, alerts, bad
input; with the easing feedback on every demo model. The easing analysis: tests/analysis/test_easing.py; the live
plot: tests/viz/test_monitor.py; the history export: tests/test__bench_history.py."""

import json

import matplotlib
import pytest
import torch
from conftest import assert_bitwise, assert_plain, snapshot
from conftest import val_batches as load

import workbench as wb
from workbench.analysis.states import StateError

matplotlib.use("Agg")


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is fastest and steadiest


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
