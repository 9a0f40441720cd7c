"""compare/measure.py: deployed size, FLOPs and measured latency of structured vs unstructured rows."""

import pytest
from conftest import assert_bitwise, snapshot

import workbench as wb

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is fastest and steadiest


def test_structured_removal_buys_measured_speed_and_unstructured_masks_do_not(small):
    model, _, val, _ = small()
    before = snapshot(model)
    res = wb.compare(model, val, ["magnitude", "filter-l1"], [0.8], backend="shrink", repeats=5)
    assert_bitwise(model, before)
    mag, filt = res.row("magnitude", 0.8), res.row("filter-l1", 0.8)
    assert mag["deployed"] == "masked" and filt["deployed"] == "shrink"
    assert mag["params_deployed"] == res.baseline["params_deployed"]  # masks store every zero
    assert filt["params_deployed"] < 0.25 * res.baseline["params_deployed"]
    assert mag["size_bytes"] == pytest.approx(res.baseline["size_bytes"], rel=0.01)
    assert filt["size_bytes"] < 0.3 * res.baseline["size_bytes"]
    assert mag["flops_deployed"] == res.baseline["flops_deployed"] > filt["flops_deployed"]
    for r in (mag, filt):
        assert r["latency_ms"] > 0 and r["start_latency_ms"] > 0 and r["masked_latency_ms"] > 0
        assert r["speedup"] == pytest.approx(r["start_latency_ms"] / r["latency_ms"], rel=0.3)
    # how much faster the shrunk model runs is a measurement, not an invariant: benchmarks/structured.py reports it
