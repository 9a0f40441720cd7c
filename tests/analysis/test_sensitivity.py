"""analysis/sensitivity.py: an exact scan equals a Distiller-style loop (unstructured, coupled groups, N:M and block
patterns), its engines agree, it measures from the current state, stops cleanly, refuses bad input and returns plain
data. The engines, the estimate, refine and the rows have their own test files beside this one."""

import copy
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from conftest import assert_bitwise, assert_plain, snapshot
from zoo import make

import workbench as wb
from workbench.analysis.sensitivity import SensitivityResult, rows_for
from workbench.errors import DataError, GranularityError, TargetError, WorkbenchError
from workbench.masks import n_to_prune

from .conftest import RATIOS


def distiller(model, data, layer_params, ratio, metric="accuracy"):
    """The naive loop: deepcopy, rank the layer's weights by |w| from scratch, zero, evaluate."""
    m = copy.deepcopy(model)
    scores = torch.cat([m.get_parameter(p).detach().abs().reshape(-1) for p in layer_params])
    k = n_to_prune(ratio, scores.numel())
    chosen = torch.zeros(scores.numel(), dtype=torch.bool)
    chosen[torch.argsort(scores, stable=True)[:k]] = True
    i = 0
    with torch.no_grad():
        for p in layer_params:
            w = m.get_parameter(p)
            w.masked_fill_(chosen[i : i + w.numel()].view(w.shape), 0)
            i += w.numel()
    return wb.evaluate(m, data, metric)["metric"] - wb.evaluate(model, data, metric)["metric"]


@pytest.mark.parametrize("arch", ["rescat", "lstm", "mha"])
@pytest.mark.parametrize("metric", ["accuracy", "loss"])
def test_exact_scan_equals_a_distiller_style_loop(arch, metric):
    model, data = make(arch)
    bench = wb.Workbench(model, data, metric=metric)
    snap = snapshot(model)
    s = bench.sensitivity(RATIOS, criterion="l1", progress=False)
    assert s.values.shape == (len(s.layers), 3) and s.complete
    for i, layer in enumerate(s.layers):
        params = bench.targets[layer].param_names()
        for j, r in enumerate(RATIOS):
            assert s.values[i, j] == pytest.approx(distiller(model, data, params, r, metric), abs=1e-6)
    assert_bitwise(model, snap)
    assert_plain(model)


def test_structured_rows_prune_whole_coupled_groups_and_match_the_loop():
    model, data = make("rescat")
    bench = wb.Workbench(model, data, metric="loss")
    s = bench.sensitivity(RATIOS, granularity="filter", criterion="l1", progress=False)
    # stem, a, b and dw share channels (residual add, concat, depthwise): one row, never one side alone
    i = s.row("a")
    assert set(s.members[i]) == {"stem.0", "a", "b", "dw"} and s.row("stem.0") == i
    rows = rows_for(bench, "filter", "l1")
    for j, r in enumerate(RATIOS):
        m = copy.deepcopy(model)
        with torch.no_grad():
            for k, mask in rows[i].ranking.masks(r).items():
                m.get_parameter(k).masked_fill_(mask, 0)
        want = wb.evaluate(m, data, "loss")["loss"] - wb.evaluate(model, data, "loss")["loss"]
        assert s.values[i, j] == pytest.approx(want, abs=1e-6)
    # it is the same as applying a plan to those layers, then undoing
    plan = wb.Plan({p: wb.LayerPlan(0.5, "filter", "l1") for p in s.members[i]})
    bench.apply(plan)
    assert bench.current.metrics["loss"] - bench.history[0].metrics["loss"] == pytest.approx(s.values[i, 1], abs=1e-6)


def test_suffix_engine_and_full_clones_agree_and_threads_do_not_change_numbers():
    model, data = make("rescat")
    bench = wb.Workbench(model, data)
    a = bench.sensitivity(RATIOS, engine="suffix", progress=False)
    b = bench.sensitivity(RATIOS, engine="full", progress=False)
    with ThreadPoolExecutor(3) as pool:
        c = bench.sensitivity(RATIOS, executor=pool, progress=False)
    assert "suffix" in a.engine and "clones" in b.engine
    np.testing.assert_allclose(a.values, b.values, atol=1e-6)
    np.testing.assert_array_equal(a.values, c.values)


def test_scan_on_an_already_pruned_model_measures_from_the_current_state():
    model, data = make("rescat")
    bench = wb.Workbench(model, data, metric="loss")
    bench.apply(wb.Plan.uniform(0.5))
    snap = snapshot(model)
    s = bench.sensitivity((0.3, 0.5, 0.7), progress=False)
    assert s.baseline == pytest.approx(bench.evaluate()["loss"])
    assert np.all(s.values[:, :2] == 0)  # at or below the current sparsity nothing more goes
    assert np.any(s.values[:, 2] != 0)
    assert_bitwise(model, snap)


def test_bad_input():
    model, data = make("rescat")
    bench = wb.Workbench(model, data)
    with pytest.raises(WorkbenchError, match="at least one ratio"):
        bench.sensitivity([])
    with pytest.raises(WorkbenchError, match=r"\[0, 1\)"):
        bench.sensitivity([0.5, 1.2])
    with pytest.raises(TargetError, match="Did you mean"):
        bench.sensitivity(layers=["stm.0"])
    with pytest.raises(GranularityError, match=r"'head'.*outputs of the model"):
        bench.sensitivity(granularity="neuron", layers=["head"])
    with pytest.raises(DataError):
        bench.sensitivity(data=[])


def test_result_is_plain_data():
    model, data = make("mha")
    s = wb.Workbench(model, data).sensitivity(RATIOS, progress=False)
    back = SensitivityResult.from_dict(s.to_dict())
    np.testing.assert_array_equal(back.values, s.values)
    assert back.layers == s.layers and s.predict(s.layers[0], 0.0) == 0.0
    assert s.predict(s.layers[0], 0.5) == pytest.approx(s.values[0, 1])


@pytest.mark.parametrize("granularity, ratios", [("2:4", [0.5]), ("block4x4", [0.25, 0.5, 0.75])])
def test_patterned_scans_measure_the_pattern_a_plan_applies(granularity, ratios):
    """An N:M or block scan measures what applying that pattern to the layer does (not unstructured pruning)."""
    model, data = wb.demo.load("digits-mlp")
    bench = wb.Workbench(model, data)
    before = snapshot(model)
    sens = bench.sensitivity(ratios, granularity=granularity, progress=False)
    dense = wb.evaluate(model, bench.calib)["accuracy"]
    for i, name in enumerate(sens.layers):
        for j, r in enumerate(ratios):
            bench.apply(wb.Plan({name: wb.LayerPlan(r, granularity, "magnitude")}), evaluate=False)
            expect = wb.evaluate(model, bench.calib)["accuracy"] - dense
            bench.undo()
            assert sens.values[i, j] == pytest.approx(expect, abs=1e-6), (name, r)
    assert_bitwise(model, before)
    unstructured = bench.sensitivity(ratios, layers=list(sens.layers), progress=False)
    assert not np.allclose(unstructured.values, sens.values)  # a different pattern, a different curve


def test_n_m_scan_at_another_ratio_says_the_pattern_fixes_it():
    model, data = wb.demo.load("digits-mlp")
    bench = wb.Workbench(model, data)
    with pytest.raises(GranularityError, match=r"sparsity is 0.5; scan it with ratios=\[0.5\]"):
        bench.sensitivity([0.3, 0.5], granularity="2:4", progress=False)
