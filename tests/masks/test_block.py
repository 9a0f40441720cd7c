import math

import pytest
import torch
from conftest import assert_bitwise, snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import workbench as wb
from workbench.errors import GranularityError
from workbench.masks import n_to_prune
from workbench.masks.block import zero_blocks


def _blocks_l1(w: torch.Tensor, r: int, c: int) -> torch.Tensor:
    rows, cols = w.shape[0], math.prod(w.shape[1:])
    return w.abs().double().reshape(rows // r, r, cols // c, c).sum((1, 3))


block_cases = st.tuples(
    st.sampled_from(["linear", "conv"]),
    st.sampled_from([1, 2, 4]),  # R
    st.sampled_from([1, 2, 4, 8]),  # C
    st.integers(1, 4),  # row blocks
    st.integers(1, 4),  # column blocks
    st.floats(0.0, 0.95),
    st.integers(0, 2**16),
)


def _model(kind, r, c, a, b):
    if kind == "linear":
        return nn.Sequential(nn.Linear(c * b, r * a))
    return nn.Sequential(nn.Conv2d(c * b, r * a, 1))  # 1x1 kernel: columns = input channels


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(block_cases)
def test_block_masks_prune_whole_lowest_blocks_and_undo_is_bitwise(case):
    kind, r, c, a, b, ratio, seed = case
    torch.manual_seed(seed)
    model = _model(kind, r, c, a, b)
    bench = wb.Workbench(model)
    dense = snapshot(model)
    w = model[0].weight
    before = w.detach().clone()
    bench.apply(wb.Plan.uniform(ratio, granularity=f"block{r}x{c}"))
    dead = zero_blocks(w, r, c)
    mask = bench.masks.get("0.weight", torch.zeros_like(w, dtype=torch.bool))
    assert torch.equal(mask, w == 0)
    grid = mask.reshape(r * a, -1).reshape(a, r, b, c)
    assert torch.equal(grid.all(3).all(1), grid.any(3).any(1))  # every block is all pruned or all kept
    assert int(dead.sum()) == n_to_prune(ratio, a * b)
    l1 = _blocks_l1(before, r, c)
    if dead.any() and (~dead).any():
        assert l1[dead].max() <= l1[~dead].min()
    bench.undo()
    assert_bitwise(model, dense)


def test_block_counts_dead_blocks_and_never_revives():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 16))
    bench = wb.Workbench(model)
    with torch.no_grad():
        model[0].weight[:4, :4] = 1e-3  # a weak block
    bench.apply(wb.Plan({"0": wb.LayerPlan(0.6, "weight")}))
    old = bench.masks["0.weight"].clone()
    bench.apply(wb.Plan.uniform(0.25, granularity="block4x4"))
    new = bench.masks["0.weight"]
    assert (new | ~old).all()
    dead = zero_blocks(model[0].weight, 4, 4)
    assert int(dead.sum()) >= n_to_prune(0.25, 16)
    assert dead[0, 0]


def test_conv_blocks_tile_the_flattened_weight(demo_models):
    model, data = demo_models["digits-cnn"]
    bench = wb.Workbench(model, data)
    t = bench.targets["features.3"]  # 32 x 16x3x3 -> 32 x 144
    assert "block4x4" in t.patterns and "block32x32" not in t.patterns and t.supports("block8x16")
    snap = snapshot(model)
    bench.apply(wb.Plan({"features.3": wb.LayerPlan(0.5, "block8x16")}), evaluate=False)
    w = model.features[3].weight
    assert int(zero_blocks(w, 8, 16).sum()) == n_to_prune(0.5, (32 // 8) * (144 // 16))
    bench.reset()
    assert_bitwise(model, snap)


def test_block_size_that_does_not_tile_is_a_clear_error():
    model = nn.Sequential(nn.Linear(12, 8))
    bench = wb.Workbench(model)
    with pytest.raises(GranularityError, match=r"layer '0'.*'block8x8'.*8x12.*pad the layer or exclude"):
        bench.apply(wb.Plan({"0": wb.LayerPlan(0.5, "block8x8")}))
    with pytest.raises(GranularityError, match="positive"):
        bench.apply(wb.Plan.uniform(0.5, granularity="block0x4"))
    assert bench.store.position == 0
