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


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 3000), min_size=1, max_size=4),
    st.sampled_from(["normal", "ties", "pruned", "nan"]),
    st.integers(1, 64),
    st.data(),
)
def test_the_sampled_bracket_never_changes_the_masks(sizes, kind, sample, data):
    # tensors larger than `sample` are sampled, so the bracket can be tight, loose or missed; the masks
    # must always equal the stable argsort's
    g = torch.Generator().manual_seed(sum(sizes) + sample)
    tensors = []
    for n in sizes:
        t = torch.randn(n, generator=g)
        if kind == "ties":
            t = torch.randint(-2, 3, (n,), generator=g).float()
        elif kind == "pruned":
            t[torch.rand(n, generator=g) < 0.5] = float("-inf")
        elif kind == "nan" and n:
            t[torch.randint(n, (max(1, n // 10),), generator=g)] = float("nan")
        tensors.append(t.view(-1, 1) if n % 2 else t)
    total = sum(sizes)
    k = data.draw(st.integers(0, total))
    masks = lowest_k([lambda t=t: t for t in tensors], k, sample=sample)
    got = torch.cat([m.reshape(-1) for m in masks]) if total else torch.zeros(0, dtype=torch.bool)
    assert torch.equal(got, _reference(tensors, k))


def test_band_path_on_plain_scores_and_radix_fallback_on_heavy_ties(monkeypatch):
    import workbench.masks.topk as topk

    calls = []
    radix = topk._radix
    monkeypatch.setattr(topk, "_radix", lambda fns, k: calls.append(k) or radix(fns, k))
    g = torch.Generator().manual_seed(0)
    plain = [torch.randn(300, 200, generator=g), torch.randn(50_000, generator=g)]
    k = 40_000
    got = lowest_k([lambda t=t: t for t in plain], k, sample=1024)
    assert calls == [] and torch.equal(torch.cat([m.reshape(-1) for m in got]), _reference(plain, k))
    # half the scores are -inf (already pruned) and the plan asks for exactly that many: the k-th score is
    # one of 55,000 ties, too many candidates to hold, so the radix select runs
    tied = [t.clone() for t in plain]
    for t in tied:
        t.view(-1)[::2] = float("-inf")
    k = sum(t.numel() for t in tied) // 2
    got = lowest_k([lambda t=t: t for t in tied], k, sample=1024)
    assert calls == [k] and torch.equal(torch.cat([m.reshape(-1) for m in got]), _reference(tied, k))


def test_masks_are_row_major_for_transposed_scores():
    t = torch.randn(40, 30).t()  # non-contiguous scores
    masks = lowest_k([lambda: t], 500, sample=64)
    assert masks[0].is_contiguous() and torch.equal(masks[0].reshape(-1), _reference([t], 500))


def test_a_missed_bracket_falls_back_to_the_exact_select(monkeypatch):
    import workbench.masks.topk as topk

    monkeypatch.setattr(topk, "SIGMAS", 0.0)  # a bracket one rank wide: it misses most of the time
    calls = []
    radix = topk._radix
    monkeypatch.setattr(topk, "_radix", lambda fns, k: calls.append(k) or radix(fns, k))
    g = torch.Generator().manual_seed(1)
    for trial in range(6):
        ts = [torch.randn(5000, generator=g), torch.randn(70, 70, generator=g)]
        k = 1000 * (trial + 1)
        got = lowest_k([lambda t=t: t for t in ts], k, sample=256)
        assert torch.equal(torch.cat([m.reshape(-1) for m in got]), _reference(ts, k))
    assert calls  # the fallback ran, and the masks above were still exact


def test_float64_scores_are_ranked_as_float32_on_both_paths(monkeypatch):
    import workbench.masks.topk as topk

    # 4,000 scores distinct in float64 (decreasing with position) but all 1.0 in float32, where the k-th falls:
    # float64 would take the last of them, float32 ties take the first
    g = torch.Generator().manual_seed(3)
    low, high = (
        torch.rand(5_000, generator=g, dtype=torch.float64),
        2 + torch.rand(5_000, generator=g, dtype=torch.float64),
    )
    tied = 1.0 + torch.arange(4_000, 0, -1, dtype=torch.float64) * 1e-12
    s = torch.cat([low, tied, high])[torch.randperm(14_000, generator=g)]
    k = 7_000
    band = lowest_k([lambda: s], k, sample=512)
    monkeypatch.setattr(topk, "SIGMAS", 0.0)
    monkeypatch.setattr(topk, "_banded", lambda fns, shapes, k, lo, hi: topk._radix(fns, k))
    radix = lowest_k([lambda: s], k, sample=512)
    assert torch.equal(band[0], radix[0]) and torch.equal(band[0], _reference([s.float()], k))
