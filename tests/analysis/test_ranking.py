"""analysis/_ranking.py: a prefix ranking selects what a stable argsort selects (ties, -inf, -0.0), and its pro-rata
prefix sums move less than the bucket of the k-th score."""

import math

import pytest
import torch

from workbench.masks import n_to_prune


@pytest.mark.parametrize("scores", ["magnitudes", "signed", "magnitudes and -0.0"])
def test_prefix_ranking_selects_what_a_stable_argsort_selects(scores, monkeypatch):
    from workbench.analysis import _ranking

    monkeypatch.setattr(_ranking, "SORT_BELOW", 100)  # the bucketed path, on a small row
    signed = scores == "signed"
    g = torch.Generator().manual_seed(0)
    a = torch.randn(60, 70, generator=g)
    a = a if signed else a.abs()
    a[:5] = 0.0  # a block of ties
    a[10, :30] = -math.inf if signed else 0.0  # already pruned weights score -inf
    a[20:22] = 0.5  # more ties, in the middle
    if scores != "magnitudes":
        a[30, :7] = -0.0  # equal to 0.0 for the sort
    b = torch.randn(900, generator=g).round()  # a second tensor of the row, many ties
    b = b if signed else b.abs()
    r = _ranking.PrefixRanking(["a", "b"], [a, b])
    # no sign bit anywhere: buckets are the upper int16 of the floats' bits; -0.0 has one, so the int32 key
    assert r._ids is not None and r._ids.dtype == (torch.int16 if scores == "magnitudes" else torch.int32)
    flat = torch.cat([a.reshape(-1), b])
    order = torch.argsort(flat, stable=True)
    vals = torch.randn(flat.numel(), dtype=torch.float64, generator=g)
    ks = [0, 1, 7, 300, 350, 2000, 2500, flat.numel() - 1]
    for k, s in zip(ks, r.prefix_sums(vals, ks)):
        want = torch.zeros(flat.numel(), dtype=torch.bool)
        want[order[:k]] = True
        assert torch.equal(r.chosen(k), want), k
        assert s == pytest.approx(float(vals[want].sum()), abs=1e-9)
    masks = r.masks(0.4)
    assert masks["a"].shape == a.shape and masks["b"].shape == b.shape
    assert torch.equal(torch.cat([masks["a"].reshape(-1), masks["b"]]), r.chosen(n_to_prune(0.4, flat.numel())))
    assert torch.equal(r.order, order)


def test_prefix_sums_pro_rata_move_less_than_the_bucket_of_the_kth_score(monkeypatch):
    from workbench.analysis import _ranking

    monkeypatch.setattr(_ranking, "SORT_BELOW", 100)
    g = torch.Generator().manual_seed(1)
    w = torch.randn(200_000, generator=g).abs()
    r = _ranking.PrefixRanking(["w"], [w])
    vals = torch.randn(w.numel(), generator=g)
    ks = [n_to_prune(q, w.numel()) for q in (0.1, 0.5, 0.9)]
    for k, a, b in zip(ks, r.prefix_sums(vals, ks), r.prefix_sums(vals, ks, exact=False)):
        bucket = r._locate(k)[0]
        whole = float(vals[r._ids == bucket].abs().sum())
        assert abs(a - b) <= whole
