"""wb.quantize / wb.quantize_profile (workbench/quantize.py): a new int8 model, the live one untouched, zeros kept."""

import pytest
import torch
from conftest import assert_bitwise, assert_plain, snapshot

import workbench as wb
from workbench.quantize import QuantizationError

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is fastest and steadiest


@pytest.mark.parametrize("name", ["digits-mlp", "digits-lstm", "digits-transformer"])
def test_quantized_copy_leaves_the_live_model_untouched_and_keeps_accuracy(name):
    model, data = wb.demo.load(name)
    model.train()
    bench = wb.Workbench(model, data)
    bench.apply(wb.Plan.global_(0.5))
    snap = snapshot(model)
    q = wb.quantize(bench, "int8-dynamic")
    assert_bitwise(model, snap)
    assert_plain(model)
    assert model.training and not q.training
    kinds = {m._get_name() for m in q.modules()}
    assert "DynamicQuantizedLinear" in kinds and (name != "digits-lstm" or "DynamicQuantizedLSTM" in kinds)
    acc_float = wb.evaluate(model, data.val)["accuracy"]
    assert abs(wb.evaluate(q, data.val)["accuracy"] - acc_float) < 0.03  # shipped weights: 1 digit at most


def test_pruned_weights_stay_exactly_zero_in_int8():
    model, data = wb.demo.load("digits-mlp")
    bench = wb.Workbench(model, data)
    bench.apply(wb.Plan.global_(0.7))
    q = wb.quantize(model)
    for i in (1, 3, 5):
        w = q[i].weight()
        assert w.q_zero_point() == 0
        assert (w.int_repr()[model[i].weight == 0] == 0).all()  # symmetric per-tensor int8: 0.0 -> 0
    half = wb.quantize(model, "fp16-dynamic")
    assert half[1]._get_name() == "DynamicQuantizedLinear"


def test_unknown_scheme_and_missing_engine_say_what_is_available(monkeypatch):
    model = torch.nn.Linear(4, 2)
    with pytest.raises(QuantizationError, match="available: int8-dynamic, fp16-dynamic"):
        wb.quantize(model, "int4")
    monkeypatch.setattr(type(torch.backends.quantized), "supported_engines", ["none"])
    with pytest.raises(QuantizationError, match="no quantized engine is available on this platform"):
        wb.quantize(model)


def test_profile_dense_pruned_quantized_side_by_side():
    model, data = wb.demo.load("digits-mlp")
    bench = wb.Workbench(model, data)
    bench.apply(wb.Plan.global_(0.8))
    snap = snapshot(model)
    prof = wb.quantize_profile(bench, repeats=3, batch=64)
    assert_bitwise(model, snap)
    rows = {r["variant"]: r for r in prof.rows}
    assert list(rows) == ["dense", "pruned", "int8-dynamic", "pruned + int8-dynamic"]
    assert rows["dense"]["sparsity"] == 0 and rows["pruned"]["sparsity"] == pytest.approx(0.8, abs=0.01)
    assert rows["pruned + int8-dynamic"]["zeros_kept"] is True and rows["pruned"]["zeros_kept"] is None
    assert rows["int8-dynamic"]["bytes"] < rows["dense"]["bytes"] / 2  # int8 weights: about a quarter
    assert rows["pruned"]["zipped"] < rows["dense"]["zipped"]  # zeros compress
    assert rows["dense"]["metric"] == bench.history[0].metrics["metric"]
    assert "pruned + int8-dynamic" in prof.table() and prof.to_dict()["metric_name"] == "accuracy"
