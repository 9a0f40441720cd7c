"""compare/strategies.py: the built-in strategies on every demo model; the layer strategy deploys smaller."""

import pytest
import torch
from conftest import assert_bitwise, assert_plain, snapshot

import workbench as wb

from .conftest import DEFAULT

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is fastest and steadiest


@pytest.mark.parametrize("name", wb.demo.available())
def test_every_demo_model(name, small):
    model, _, val, _ = small(name, n_val=90)
    before = snapshot(model)
    res = wb.compare(model, val, list(DEFAULT), [0.5], backend="shrink", repeats=2, on_error="record")
    assert_bitwise(model, before)
    assert_plain(model)
    assert len(res.rows) == len(DEFAULT)
    errors = {r["strategy"]: r["error"] for r in res.rows if r["error"]}
    if name == "digits-lstm":  # entropy scores neurons/filters of linear/conv layers; this model has none
        assert list(errors) == ["entropy"] and "structurally" in errors["entropy"]
    else:
        assert not errors, errors
    for r in res.rows:
        if r["error"] is None:
            assert 0.0 <= r["metric"] <= 1.0 and r["params"] < res.baseline["params"]
            assert r["latency_ms"] > 0


def test_layer_strategy_removes_residual_branches_and_deploys_smaller():
    model, data = wb.demo.load("digits-resnet")
    bench = wb.Workbench(model, data)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = wb.compare(bench, None, ["layer"], [0.5], backend="shrink", repeats=1)
    (row,) = res.rows
    assert row["deployed"] == "shrink" and row["params_deployed"] < 0.5 * res.baseline["params"]
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
