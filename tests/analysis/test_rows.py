"""analysis/_rows.py: a scan's rows mask what a plan masks, for single weights and for per-tensor patterns (a
user's registered one included)."""

import pytest
import torch

import workbench as wb
from workbench.analysis.sensitivity import rows_for


def test_rows_of_single_weights_mask_what_a_plan_masks():
    from workbench.masks.select import weight_ranking

    model, data = wb.demo.load("digits-mlp")
    bench = wb.Workbench(model, data)
    for row in rows_for(bench, "weight", "l1"):
        t = bench.targets[row.label]
        ref = weight_ranking(model, bench.store, [(t, p) for p in t.param_names()], "l1", bench.seed)
        for r in (0.1, 0.5, 0.9):
            got, want = row.ranking.masks(r), ref.masks(r)
            assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)


@pytest.mark.parametrize("granularity", ["2:4", "block4x4", "cols-scan"])
def test_rows_of_a_per_tensor_pattern_mask_what_a_plan_masks(granularity):
    """A scan follows the granularity's own selection (its mask_fn), also for one registered by a user: a pattern
    the scan did not know used to be scanned as single weights."""
    from workbench.masks import Granularity, register_granularity, unregister_granularity

    def first_columns(scores, ratio, current, g):
        mask = torch.zeros_like(scores, dtype=torch.bool)
        mask[:, : round(ratio * scores.shape[1])] = True
        return mask

    register_granularity(Granularity("cols-scan", "first columns", ("linear",), False, mask_fn=first_columns))
    try:
        model, data = wb.demo.load("digits-mlp")
        bench = wb.Workbench(model, data)
        ratios = (0.5,) if granularity == "2:4" else (0.25, 0.5)
        rows = rows_for(bench, granularity, "l1")
        assert rows
        for row in rows:
            for r in ratios:
                got = row.ranking.masks(r)
                want = bench.preview(wb.Plan({row.label: wb.LayerPlan(r, granularity, "l1")})).masks
                assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    finally:
        unregister_granularity("cols-scan")
