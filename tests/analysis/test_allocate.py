"""analysis/allocate.py: allocations meet their FLOPs/params/sparsity budget, beat uniform, refuse bad input."""

import warnings

import numpy as np
import pytest
import torch
from zoo import make

import workbench as wb
from workbench.errors import PlanError


@pytest.mark.parametrize("target", ["flops", "params", "sparsity"])
@pytest.mark.parametrize("granularity", ["weight", "filter"])
def test_allocation_meets_the_budget(target, granularity):
    model, data = wb.demo.load("digits-cnn")
    bench = wb.Workbench(model, data)
    a = bench.allocate(0.4, target=target, granularity=granularity, criterion="l1", ratios=np.linspace(0.1, 0.9, 5))
    # shipped weights: 0.400 to 0.412 achieved over the six cases
    assert isinstance(a.plan, wb.Plan) and a is bench.last_allocation and a.achieved >= 0.4 and a.achieved < 0.5
    bench.apply(a)  # an Allocation applies its plan
    if target == "flops":
        prof = bench.profile(repeats=1)
        real = 1 - prof.total_flops_effective / prof.total_flops_dense
    elif target == "params":
        real = 1 - sum(int(torch.count_nonzero(p)) for p in model.parameters()) / sum(
            p.numel() for p in model.parameters()
        )
    else:
        rep = [r for r in bench.report(evaluate=False).layers if r.kind != "norm"]
        real = 1 - sum(r.nonzeros for r in rep) / sum(r.params for r in rep)
    assert real == pytest.approx(a.achieved, abs=0.01)
    bench.reset()


def test_allocation_beats_the_uniform_plan_at_the_same_sparsity():
    model, data = wb.demo.load("digits-resnet")
    bench = wb.Workbench(model, data, metric="loss")
    plan = bench.allocate(0.7, target="sparsity").plan
    allocated = bench.apply(plan).metrics["loss"]
    bench.undo()
    uniform = bench.apply(wb.Plan.uniform(0.7)).metrics["loss"]
    assert allocated < uniform  # shipped weights: loss 1.04 vs 2.85


def test_allocation_bad_input():
    model, data = make("rescat")
    bench = wb.Workbench(model, data)
    with pytest.raises(PlanError, match=r"\(0, 1\)"):
        bench.allocate(1.5)
    with pytest.raises(PlanError, match="target"):
        bench.allocate(0.5, target="energy")
    with pytest.raises(PlanError, match="out of reach"):
        bench.allocate(0.95, target="params", ratios=[0.1, 0.2])


def test_allocating_from_first_order_estimates_warns_and_second_order_works():
    # near a trained optimum first-order Taylor predicts loss *drops* for whole layers; allocating from it
    # strips them (digits-cnn fell to chance at 10% of the weights); the diagonal Fisher term fixes that
    model, data = wb.demo.load("digits-cnn")
    bench = wb.Workbench(model, data)
    grid = np.linspace(0.1, 0.9, 9)
    first = bench.sensitivity(grid, mode="estimate", progress=False)
    assert (first.values < 0).any()  # shipped weights: 10 of 45 estimates below zero, the lowest -2.2e-4
    with pytest.warns(wb.WorkbenchWarning, match="first-order Taylor.*second_order=True"):
        bench.allocate(0.2, target="sparsity", sens=first)
    second = bench.sensitivity(grid, mode="estimate", second_order=True, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", wb.WorkbenchWarning)
        plan = bench.allocate(0.2, target="sparsity", sens=second).plan
    assert bench.apply(plan).metrics["accuracy"] > 0.95  # shipped weights: 0.989


def test_allocate_returns_its_allocation_and_plan_attributes_still_answer_with_a_warning():
    model, data = make("rescat")
    bench = wb.Workbench(model, data)
    a = bench.allocate(0.3, target="sparsity", ratios=[0.2, 0.4, 0.6])
    with pytest.warns(DeprecationWarning, match=r"use \.plan\.layers"):
        assert a.layers == a.plan.layers  # code written when allocate returned the plan keeps working
    with pytest.raises(AttributeError):
        a.no_such_attribute  # noqa: B018
    assert bench.preview(a).masks.keys() == bench.preview(a.plan).masks.keys()
