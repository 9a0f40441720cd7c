"""training/admm.py: ADMM reaches its sparsity constraint with a shrinking residual, a weak penalty barely pulls,
bad penalties and structured plans are refused, and undo is bitwise."""

import pytest
from conftest import assert_bitwise, snapshot
from test_schedules import mlp_bench

import workbench as wb
from workbench.masks import n_to_prune

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is fastest and steadiest


def test_admm_reaches_the_constraint_with_a_shrinking_residual_and_undoes_bitwise():
    model, bench = mlp_bench()
    dense = snapshot(model)
    r = wb.training.admm(bench, wb.Plan.uniform(0.75), epochs=6, rho=5.0, finetune_epochs=1, lr=5e-2, progress=False)
    for layer in (model[0], model[2]):
        assert int((layer.weight == 0).sum()) == n_to_prune(0.75, layer.weight.numel())
    res = r.info["residual"]
    assert len(res) == 6 and res[-1] < 0.25 * res[0]  # W is pulled onto the sparse set (this run: 0.17 of it)
    assert len(r.epoch) == 7 and bench.history[-1].kind == "admm"
    bench.undo()
    assert_bitwise(model, dense)
    weak = wb.training.admm(
        bench, wb.Plan.uniform(0.75), epochs=6, rho=1e-3, finetune_epochs=0, lr=5e-2, progress=False
    )
    assert weak.info["residual"][-1] > res[-1]  # a weak penalty barely pulls (this run: 1.36 vs 0.056)
    bench.undo()
    for rho in (0, -1e-3, float("nan"), "1e-3"):
        with pytest.raises(wb.training.TrainingError, match="rho must be a number > 0"):
            wb.training.admm(bench, rho=rho)
    with pytest.raises(wb.training.TrainingError, match="granularity='weight'"):
        wb.training.admm(bench, wb.Plan.uniform(0.5, granularity="neuron"))
    assert_bitwise(model, dense)
