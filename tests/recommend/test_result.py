"""recommend/result.py: a lower-is-better metric (loss): drops, budget text and reasons in its direction."""

import pytest

import workbench as wb
from workbench.recommend import recommend

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is fastest and steadiest


def test_a_loss_metric_is_lower_is_better():
    model, data = wb.demo.load("digits-mlp")
    bench = wb.Workbench(model, data, metric="loss")
    rec = recommend(bench, "size", 0.05, strategies=["global-magnitude", "2:4"], repeats=1)
    assert rec.metric_name == "loss" and rec.budget_text == "loss at most 0.05 worse"
    for r in rec.rows:
        assert r.drop == pytest.approx(r.metric - rec.metric_now)  # a higher loss is a drop
        assert r.meets_budget == (r.drop <= 0.05 + 1e-12)
        assert f"loss {rec.metric_now:.4f} -> {r.metric:.4f}" in r.reason
