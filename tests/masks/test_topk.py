import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from zoo import make

import workbench as wb
from workbench.masks.select import DEFAULT_KINDS, weight_masks, weight_ranking
from workbench.masks.topk import lowest_k, sortable_keys


def _reference(tensors, k):
    flat = torch.cat([t.reshape(-1) for t in tensors])
    chosen = torch.zeros(flat.numel(), dtype=torch.bool)
    chosen[torch.argsort(flat, stable=True)[:k]] = True
    return chosen


values = st.one_of(
    st.integers(-3, 3).map(float),  # many ties
    st.floats(allow_nan=False, allow_infinity=True, width=32),
    st.sampled_from([float("-inf"), -0.0, 0.0, 1e-45, -1e-45]),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(values, min_size=0, max_size=40), min_size=1, max_size=5), st.data())
def test_lowest_k_equals_a_stable_argsort_of_everything(chunks, data):
    tensors = [torch.tensor(c, dtype=torch.float32) for c in chunks]
    n = sum(t.numel() for t in tensors)
    k = data.draw(st.integers(0, n))
    masks = lowest_k([lambda t=t: t for t in tensors], k)
    got = torch.cat([m.reshape(-1) for m in masks]) if n else torch.zeros(0, dtype=torch.bool)
    assert torch.equal(got, _reference(tensors, k)) if n else not got.numel()
    assert all(m.shape == t.shape for m, t in zip(masks, tensors))


def test_keys_order_like_floats():
    x = torch.tensor([3.5, -2.0, float("-inf"), 0.0, -0.0, 1e-40, -1e-40, float("inf"), -7.25])
    keys = sortable_keys(x)
    assert torch.equal(torch.argsort(keys, stable=True), torch.argsort(x, stable=True))


def test_shapes_are_kept_and_work_on_2d_tensors():
    torch.manual_seed(0)
    ts = [torch.randn(7, 5).abs(), torch.randn(3, 2, 4).abs()]
    masks = lowest_k([lambda t=t: t for t in ts], 20)
    assert [m.shape for m in masks] == [t.shape for t in ts] and sum(int(m.sum()) for m in masks) == 20


@pytest.mark.parametrize("criterion", ["magnitude", "l2", "random"])
@pytest.mark.parametrize("ratio", [0.1, 0.6, 0.95])
def test_selection_masks_equal_the_argsort_ranking_with_pruned_weights(criterion, ratio):
    model, data = make("rescat")
    bench = wb.Workbench(model, data)
    bench.apply(wb.Plan.uniform(0.3, criterion="random"), evaluate=False)  # some scores are -inf now
    with torch.no_grad():
        model.a.weight[:2] = 0.25  # and many ties
    pairs = [(t, p) for t in bench.targets if t.kind in DEFAULT_KINDS for p in t.param_names()]
    want = weight_ranking(model, bench.store, pairs, criterion, 0).masks(ratio)
    got = weight_masks(model, bench.store, pairs, criterion, ratio, 0)
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
