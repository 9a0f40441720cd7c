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
    # how much faster the shrunk model runs is a measurement, not an invariant: benchmarks/structured.py reports it


def test_speedup_is_the_median_of_each_rounds_ratio_and_latencies_the_medians(small, monkeypatch):
    """With readings that do not depend on the machine: each latency is the median of its blocks, and the speedup
    the median of each round's start/deployed ratio (2 here), not the ratio of the medians (4)."""
    from workbench.compare import measure

    readings = {"start": [2.0, 4.0, 6.0], "masked": [3.0, 5.0, 7.0], "deployed": [1.0, 1.0, 3.0]}
    asked = []

    def fake_samples(fns, **options):
        asked.append((sorted(fns), sorted(options["before"]), options["repeats"]))
        return {k: readings[k] for k in fns}

    monkeypatch.setattr(measure, "samples", fake_samples)
    model, _, val, _ = small()
    res = wb.compare(model, val, ["magnitude", "filter-l1"], [0.8], backend="shrink", repeats=3)
    filt, mag = res.row("filter-l1", 0.8), res.row("magnitude", 0.8)
    assert (filt["start_latency_ms"], filt["masked_latency_ms"], filt["latency_ms"]) == (4.0, 5.0, 1.0)
    assert filt["speedup"] == 2.0
    assert mag["latency_ms"] == 5.0 and mag["speedup"] == pytest.approx(0.8)  # deployed masked: median of 2/3, 4/5, 6/7
    two, three = ["masked", "start"], ["deployed", "masked", "start"]  # each timed block runs after its state is set
    assert asked == [(two, two, 3), (two, two, 3), (three, three, 3)]  # the start, the masked row, the shrunk row
