import pytest
import torch
from conftest import assert_bitwise, snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import workbench as wb
from workbench.errors import GranularityError, PlanError
from workbench.masks.nm import is_nm_sparse, nm_groups, nm_mask


def _layer(kind: str, n_in: int, n_out: int, k: int) -> nn.Module:
    return nn.Linear(n_in, n_out) if kind == "linear" else nn.Conv2d(n_in, n_out, k)


nm_cases = st.tuples(
    st.sampled_from(["linear", "conv"]),
    st.integers(2, 8).flatmap(lambda m: st.tuples(st.integers(1, m - 1), st.just(m))),
    st.integers(1, 4),  # groups of M along the input dimension
    st.integers(1, 6),  # outputs
    st.integers(1, 3),  # conv kernel size
    st.integers(0, 2**16),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nm_cases)
def test_nm_keeps_exactly_n_of_every_m_and_undo_is_bitwise(case):
    kind, (n, m), groups, n_out, k, seed = case
    torch.manual_seed(seed)
    model = nn.Sequential(_layer(kind, groups * m, n_out, k))
    bench = wb.Workbench(model)
    dense = snapshot(model)
    w = model[0].weight
    before = w.detach().clone()
    bench.apply(wb.Plan.uniform(1 - n / m, granularity=f"{n}:{m}"))
    kept = nm_groups(w != 0, m).sum(-1)
    assert (kept == n).all()  # exactly N of every M (random weights have no zeros of their own)
    assert torch.equal(bench.masks["0.weight"], w == 0)
    # the kept ones are the N largest |w| of their group
    g, keep = nm_groups(before.abs(), m), nm_groups(w != 0, m)
    assert (g.masked_fill(~keep, float("inf")).amin(-1) >= g.masked_fill(keep, -1).amax(-1)).all()
    assert bool(is_nm_sparse(w, n, m))
    bench.undo()
    assert_bitwise(model, dense)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nm_cases, st.floats(0.05, 0.95))
def test_nm_counts_already_pruned_weights_and_never_revives_them(case, ratio):
    kind, (n, m), groups, n_out, k, seed = case
    torch.manual_seed(seed)
    model = nn.Sequential(_layer(kind, groups * m, n_out, k))
    bench = wb.Workbench(model)
    bench.apply(wb.Plan.uniform(ratio, criterion="random"))
    old = bench.masks.get("0.weight", torch.zeros_like(model[0].weight, dtype=torch.bool)).clone()
    alive_before = nm_groups(~old, m).sum(-1)
    bench.apply(wb.Plan.uniform(1 - n / m, granularity=f"{n}:{m}"))
    new = bench.masks["0.weight"]
    assert (new | ~old).all()  # nothing revived
    assert torch.equal(nm_groups(~new, m).sum(-1), alive_before.clamp(max=n))


def test_conv_groups_run_along_input_channels_at_each_kernel_position():
    conv = nn.Conv2d(4, 1, 2, bias=False)
    with torch.no_grad():  # input channel c, kernel position p: value (c + 1) * 10 + p, except channel 2 is tiny
        w = torch.arange(4.0).view(1, 4, 1, 1).add(1).mul(10) + torch.arange(4.0).view(1, 1, 2, 2)
        w[0, 2] = 0.5
        conv.weight.copy_(w)
    mask = nm_mask(conv.weight.abs(), 3, 4)
    # at every kernel position, the one dropped of the 4 input channels is channel 2 (the smallest)
    assert torch.equal(mask[0].nonzero()[:, 0].unique(), torch.tensor([2]))
    assert int(mask.sum()) == 4


def test_nm_on_a_demo_model_skips_layers_that_do_not_fit_and_names_them(demo_models):
    model, data = demo_models["digits-cnn"]
    bench = wb.Workbench(model, data)
    assert "2:4" not in bench.targets["features.0"].patterns  # one input channel
    sel = bench.preview(wb.Plan.uniform(0.5, granularity="2:4"))
    assert "features.0" in sel.skipped and "pad" in sel.skipped["features.0"]
    for name in ("features.3", "features.7", "classifier.1", "classifier.3"):
        assert name in sel.layers
        w = model.get_submodule(name).weight
        assert bool(is_nm_sparse(w.masked_fill(sel.masks[f"{name}.weight"], 0), 2, 4)), name


def test_bad_nm_plans_are_clear_errors_and_change_nothing():
    model = nn.Sequential(nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 4))
    bench = wb.Workbench(model)
    snap = snapshot(model)
    with pytest.raises(GranularityError, match=r"layer '0' \(Linear\) cannot be pruned by '2:4'.*10.*pad.*exclude"):
        bench.apply(wb.Plan({"0": wb.LayerPlan(0.5, "2:4")}))
    with pytest.raises(PlanError, match=r"fixed at 0.75; got ratio 0.5.*ratio=0.75"):
        bench.apply(wb.Plan({"2": wb.LayerPlan(0.5, "1:4")}))
    with pytest.raises(PlanError, match=r"fixed at 0\.5"):
        bench.apply(wb.Plan.uniform(0.3, granularity="2:4"))
    with pytest.raises(PlanError, match="not supported globally"):
        bench.apply(wb.Plan.global_(0.5, granularity="2:4"))
    with pytest.raises(GranularityError, match="0 < N < M"):
        bench.apply(wb.Plan.uniform(0.5, granularity="4:4"))
    with pytest.raises(PlanError, match="selects no target"):
        bench.apply(wb.Plan.uniform(0.875, granularity="2:16"))
    assert_bitwise(model, snap)
    assert bench.store.position == 0
