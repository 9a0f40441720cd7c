"""Raw errors that used to reach the user: each now works, or raises a clear error naming the value and the fix."""

from __future__ import annotations

import pytest
import torch
from conftest import assert_bitwise, snapshot

import workbench as wb
from workbench.errors import DataError, WorkbenchWarning

pytestmark = pytest.mark.usefixtures("one_thread")


def mlp(dtype=torch.float32):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)).to(dtype)


def batches(n=2, classes=3):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(16, 8, generator=g), torch.randint(0, classes, (16,), generator=g)) for _ in range(n)]


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_a_float32_loader_feeds_a_model_of_another_dtype(dtype):
    model = mlp(dtype)
    bench = wb.Workbench(model, batches())
    assert "neuron" in bench.targets["0"].granularities  # the structure trace ran in the model's dtype
    before = snapshot(model)
    bench.evaluate()
    bench.sensitivity(mode="estimate")
    bench.sensitivity(ratios=(0.5,), layers=["0"])
    bench.apply(wb.Plan.uniform(0.5, granularity="neuron"))
    bench.undo()
    assert_bitwise(model, before)


def test_frozen_target_weights_work_in_estimates_and_recommend():
    model = mlp()
    model[0].weight.requires_grad_(False)
    bench = wb.Workbench(model, batches())
    before = snapshot(model)
    est = bench.sensitivity(mode="estimate")
    assert (est.values[est.row("0")] != 0).any()  # the frozen layer has a real estimate, not zeros
    rec = wb.recommend(bench, goal="size", budget=0.5, strategies=["global-magnitude"], repeats=1)
    assert rec.rows
    assert model[0].weight.requires_grad is False and model[0].weight.grad is None
    assert_bitwise(model, before)


def test_a_one_shot_iterator_as_data_is_refused_with_the_fix():
    data = batches()
    for bad in ((b for b in data), iter(data)):
        with pytest.raises(DataError, match=r"one-shot iterator .*list\(\.\.\.\)"):
            wb.Workbench(mlp(), bad)
    with pytest.raises(DataError, match="train is a one-shot iterator"):
        wb.Workbench(mlp(), data, train=iter(data))
    wb.Workbench(mlp(), data)  # lists and DataLoaders are re-iterable


def test_labels_outside_the_models_classes_give_a_clear_error():
    bench = wb.Workbench(mlp(), batches())
    with pytest.raises(DataError, match=r"class label 7 but the model outputs 3 classes.*\[0, 2\]"):
        bench.evaluate(batches(classes=8))
    bad = [(torch.randn(4, 8), torch.tensor([0, 1, -2, 1]))]
    with pytest.raises(DataError, match="class label -2"):
        bench.evaluate(bad)


def _mae(model, data):
    with torch.no_grad():
        return sum(float((model(x).softmax(1) - torch.nn.functional.one_hot(y, 3)).abs().mean()) for x, y in data)


def test_a_metric_carries_its_direction_into_everything_that_ranks_by_it():
    data = batches(4)
    mae = wb.Metric(_mae, higher_is_better=False)
    bench = wb.Workbench(mlp(), data, metric=mae)
    now = bench.evaluate()["metric"]
    sens = bench.sensitivity(ratios=(0.5, 0.9), layers=["0", "2"])
    assert sens.higher_is_better is False
    rec = wb.recommend(bench, goal="size", budget=0.01, strategies=["global-magnitude", "structured-l1"], repeats=1)
    for row in rec.rows:  # lower is better: a row meets the budget only if the error rose by at most 0.01
        assert row.drop == pytest.approx(row.metric - now)
        if row.meets_budget:
            assert row.metric <= now + 0.01 + 1e-12, row
    res = wb.compare(bench, None, ["magnitude"], [0.5], backend=None, repeats=1)
    assert res.higher_is_better is False


def test_a_plain_callable_metric_is_taken_as_higher_is_better_with_a_warning_saying_how_to_change_it():
    with pytest.warns(WorkbenchWarning, match=r"taken as higher-is-better.*wb\.Metric\(_mae, higher_is_better=False\)"):
        bench = wb.Workbench(mlp(), batches(), metric=_mae)
    assert bench.sensitivity(ratios=(0.5,), layers=["0"]).higher_is_better is True


def test_metric_rejects_what_is_not_a_direction():
    with pytest.raises(DataError, match="higher_is_better must be True or False"):
        wb.Metric(_mae, higher_is_better="no")
    with pytest.raises(DataError, match="needs a callable"):
        wb.Metric(3, higher_is_better=True)
