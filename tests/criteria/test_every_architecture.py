"""Every criterion of issue 8 on every test architecture: exact counts, model untouched while scoring, no hooks.

`tests/masks/test_select.py::test_every_criterion_prunes_every_architecture` covers the registry with
``include="*"``; `bn_scale` scores only layers followed by a BatchNorm (and BatchNorm layers), so it is
exercised here on those layers, and checked to refuse the others by name.
"""

import warnings

import pytest
from conftest import assert_bitwise, assert_plain, snapshot
from zoo import ZOO, make

import workbench as wb
from workbench.criteria.bn_scale import following_norms
from workbench.errors import WorkbenchWarning
from workbench.masks import n_to_prune

NEW = ("taylor", "obd", "snip", "grasp", "synflow", "wanda", "wanda-row", "bn_scale")


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is fastest and steadiest


def include_for(criterion, bench):
    if criterion != "bn_scale":
        return [t.name for t in bench.targets if not t.tied_to]
    follow = following_norms(bench.model)
    return [t.name for t in bench.targets if t.name in follow or t.module_type.startswith("BatchNorm")]


@pytest.mark.parametrize("name", ZOO)
@pytest.mark.parametrize("criterion", NEW)
def test_new_criterion_scores_without_touching_the_model_then_prunes_exactly(name, criterion):
    model, data = make(name)
    model.train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WorkbenchWarning)
        bench = wb.Workbench(model, data)
    include = include_for(criterion, bench)
    if not include:
        with pytest.raises(wb.CriterionError, match="not followed by"):
            bench.preview(wb.Plan.uniform(0.5, criterion=criterion))
        return
    snap = snapshot(model)
    sel = bench.preview(wb.Plan.uniform(0.5, criterion=criterion, include=include))
    assert_bitwise(model, snap)
    assert_plain(model)
    assert all(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    bench.apply(wb.Plan.uniform(0.5, criterion=criterion, include=include), evaluate=False)
    for t in bench.targets:
        if t.name in include:
            got = sum(int(sel.masks[p].sum()) for p in t.param_names() if p in sel.masks)
            assert got == n_to_prune(0.5, t.numel), (t.name, criterion)
    bench.undo()
    assert_bitwise(model, snap)
