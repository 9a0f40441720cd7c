"""recommend/measure.py: which backends a candidate is compiled with, what compiling records (a module that
computes what the masked model computes, or why not), and how timings become speed-ups (fixed readings: no claim
about how fast anything is)."""

import pytest
import torch
from conftest import assert_bitwise, snapshot
from torch import nn

import workbench as wb
from workbench.recommend.candidates import STRATEGIES
from workbench.recommend.context import _Ctx
from workbench.recommend.measure import _backends, _compile, _cpu_ms, _time


def _ctx():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3))
    g = torch.Generator().manual_seed(0)
    data = [(torch.randn(16, 8, generator=g), torch.randint(0, 3, (16,), generator=g))]
    bench = wb.Workbench(model, data)
    return model, data, _Ctx(bench.state, "latency", 0.01, torch.device("cpu"), 4)


def _cand(ctx, name, plan):
    masks = ctx.masks(plan)
    module = ctx.clone(masks)
    return ctx.cand(STRATEGIES[name], "", 0, 0.5, plan, masks, module, ctx.metric(module))


@pytest.mark.parametrize(
    "name, device, want",
    [
        ("structured-l1", "cpu", ["shrink"]),
        ("global-magnitude", "cpu", ["csr"]),
        ("2:4", "cpu", ["csr"]),
        ("2:4", "cuda", ["semi_structured", "csr"]),
        ("block4x4", "cuda", ["bsr", "csr"]),
    ],
)
def test_backends_are_those_of_the_family_on_the_device_most_specific_first(name, device, want):
    got = _backends(STRATEGIES[name], torch.device(device))
    assert [b for b, _ in got] == want
    assert dict(got).get("semi_structured", torch.float16) == torch.float16 and dict(got).get("csr") is None


def test_compiling_records_a_module_that_computes_what_the_masked_clone_computes():
    model, data, ctx = _ctx()
    before = snapshot(model)
    c = _cand(ctx, "structured-l1", wb.Plan({"0": wb.LayerPlan(0.5, "neuron", "l1")}))
    _compile(ctx, c, torch.device("cpu"))
    e = c.compiled["shrink"]
    x = data[0][0]
    with torch.no_grad():
        assert torch.allclose(e["module"](x), c.module(x), atol=1e-5)
    assert e["note"] == "" and e["dtype"] is None and 0 < e["bytes"] < ctx.bytes_now
    assert_bitwise(model, before)


def test_a_structured_candidate_with_nothing_removed_says_so():
    _, _, ctx = _ctx()
    c = _cand(ctx, "structured-l1", wb.Plan({}))
    _compile(ctx, c, torch.device("cpu"))
    assert c.compiled["shrink"]["note"] == "nothing to shrink: no backend removes these units yet"


def test_speedups_are_the_dense_reference_over_each_modules_time(monkeypatch):
    from workbench.sparse import timing

    _, _, ctx = _ctx()
    cands = [_cand(ctx, "structured-l1", wb.Plan({"0": wb.LayerPlan(0.5, "neuron", "l1")}))]
    cands.append(_cand(ctx, "global-magnitude", wb.Plan.global_(0.5)))
    for c in cands:
        _compile(ctx, c, torch.device("cpu"))
    asked = []

    def fake_measure(fns, **options):  # readings that do not depend on the machine
        asked.append(options)
        for f in fns.values():
            f()  # every timed callable runs
        return {"dense/None": 8.0, "0/shrink": 2.0, "1/csr": 16.0}

    monkeypatch.setattr(timing, "measure", fake_measure)
    _time(ctx, cands, torch.device("cpu"), repeats=3, timer="cpu")
    assert (cands[0].compiled["shrink"]["ms"], cands[0].compiled["shrink"]["speedup"]) == (2.0, 4.0)
    assert (cands[1].compiled["csr"]["ms"], cands[1].compiled["csr"]["speedup"]) == (16.0, 0.5)
    assert asked[-1]["clock"] == "cpu" and asked[-1]["repeats"] == 3  # on CPU the cpu timer counts process time
    _time(ctx, cands, torch.device("cpu"), repeats=3, timer="wall")
    assert "clock" not in asked[-1] and asked[-1]["device"] == torch.device("cpu")


def test_the_cpu_timer_runs_single_threaded_blocks_in_interleaved_rounds(monkeypatch):
    from workbench.sparse import timing

    asked = []
    monkeypatch.setattr(timing, "measure", lambda fns, **options: asked.append(options) or {k: 1.0 for k in fns})
    assert _cpu_ms({"a": lambda: None}, 5) == {"a": 1.0}
    assert asked == [{"repeats": 5, "min_block_s": 0.004, "clock": "cpu", "warmup": 1, "grow": "double",
                      "max_calls": 4096}]  # fmt: skip
