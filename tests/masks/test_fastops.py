import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import workbench.masks.fastops as F

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
SPECIAL = [0.0, -0.0, float("nan"), float("inf"), float("-inf"), 1e-45, -3.5]


def _tensor(n: int, dtype, seed: int, special: bool) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(n, generator=g)
    if special and n:
        idx = torch.randint(n, (max(1, n // 5),), generator=g)
        t[idx] = torch.tensor(SPECIAL)[torch.randint(len(SPECIAL), (idx.numel(),), generator=g)]
    return t.to(dtype)


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and torch.equal(a.view(F._INT[a.element_size()]), b.view(F._INT[b.element_size()]))
    )


@pytest.fixture(params=[7, 1 << 20])
def chunk(request, monkeypatch):
    # a 7-element chunk puts chunk boundaries everywhere; the real one covers a whole small tensor
    monkeypatch.setattr(F, "_CHUNK", request.param)
    return request.param


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 300), st.sampled_from(DTYPES), st.integers(0, 10**6), st.booleans(), st.floats(0, 1))
def test_zero_and_compress_equal_masked_fill_and_boolean_indexing_bit_for_bit(n, dtype, seed, special, density):
    try:
        for size in (7, 1 << 20):
            F._CHUNK = size
            t = _tensor(n, dtype, seed, special)
            t = t.view(-1, 1) if n % 2 else t
            mask = torch.rand(t.shape, generator=torch.Generator().manual_seed(seed + 1)) < density
            want_values, want = t[mask], t.clone().masked_fill_(mask, 0)
            assert _same_bits(F.compress(t, mask), want_values)
            got = t.clone()
            assert F.zero_(got, mask) is got and _same_bits(got, want)
            assert F.scatter_(got, mask, want_values) is got and _same_bits(got, t)  # undo: back to the bits
    finally:
        F._CHUNK = 1 << 20


@pytest.mark.parametrize("dtype", DTYPES)
def test_zero_on_non_contiguous_tensors_and_masks(dtype, chunk):
    t = torch.randn(30, 40).to(dtype).t()  # a transposed view: not contiguous
    mask = (torch.rand(40, 30) < 0.5).t().t()
    mask_t = torch.rand(30, 40).t() < 0.5
    for m in (mask, mask_t):
        want = t.clone().masked_fill_(m, 0)
        got = t.clone()
        F.zero_(got, m)
        assert _same_bits(got.contiguous(), want.contiguous())
        assert _same_bits(F.compress(t, m), t[m])


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 200), st.sampled_from([*DTYPES, torch.int64, torch.bool]), st.integers(0, 10**6), st.booleans())
def test_count_nonzero_equals_torch(n, dtype, seed, special):
    t = _tensor(n, torch.float32, seed, special)
    t[torch.rand(n, generator=torch.Generator().manual_seed(seed)) < 0.4] = 0.0
    t = t.nan_to_num().to(dtype) if dtype in (torch.int64, torch.bool) else t.to(dtype)
    assert F.count_nonzero(t) == int(torch.count_nonzero(t))


def test_count_nonzero_does_not_count_negative_zero():
    t = torch.tensor([0.0, -0.0, 1.0, -0.0, float("nan")])
    assert F.count_nonzero(t) == 2 == int(torch.count_nonzero(t))
    assert F.count_nonzero(torch.tensor(-0.0)) == 0 and F.count_nonzero(torch.tensor(2.0)) == 1


@pytest.mark.parametrize("dtype", DTYPES)
def test_all_finite(dtype):
    big = torch.finfo(dtype).max
    assert F.all_finite(torch.full((100,), big, dtype=dtype))  # the sum overflows, the elements do not
    assert F.all_finite(torch.zeros(0, dtype=dtype)) and F.all_finite(torch.ones(3, dtype=torch.int64))
    for bad in (float("nan"), float("inf"), float("-inf")):
        t = torch.ones(1000, dtype=dtype)
        t[777] = bad
        assert not F.all_finite(t)


def test_scatter_checks_the_count_and_falls_back_where_the_trick_does_not_apply(chunk):
    t = torch.zeros(6, 5)
    mask = torch.zeros(6, 5, dtype=torch.bool)
    mask[1, 2] = mask[4, 0] = True
    with pytest.raises((ValueError, RuntimeError)):
        F.scatter_(t.clone(), mask, torch.tensor([1.0, 2.0, 3.0]))
    tt = torch.zeros(5, 6).t()  # not contiguous: torch's masked_scatter_
    F.scatter_(tt, mask, torch.tensor([1.0, 2.0]))
    assert tt[1, 2] == 1.0 and tt[4, 0] == 2.0 and int(torch.count_nonzero(tt)) == 2
    half = torch.zeros(6, 5, dtype=torch.bfloat16)  # no numpy bfloat16: torch's masked_scatter_
    F.scatter_(half, mask, torch.tensor([1.0, 2.0], dtype=torch.bfloat16))
    assert half[4, 0] == 2.0


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 1000, (1 << 20) + 13, 3 << 20])
def test_pack_unpack_round_trip_on_cpu(n):
    from workbench.masks.store import _pack, _unpack

    m = torch.rand(n) < 0.5
    assert torch.equal(_unpack(_pack(m), m.shape), m)


def test_a_forked_child_gets_its_own_thread_pool(monkeypatch):
    import os

    parent = F._pool()
    assert F._pool() is parent
    monkeypatch.setattr(os, "getpid", lambda: -1)  # as in a child after fork: the parent's threads are gone
    child = F._pool()
    assert child is not parent
    t = torch.randn(3 << 20)
    assert torch.equal(F.compress(t, t > 0), t[t > 0])  # and it runs on the new pool


def test_large_outputs_are_prefaulted_mappings_and_results_stay_equal(monkeypatch):
    import mmap
    import sys

    calls = []

    class Spy(mmap.mmap):
        def madvise(self, *args):
            calls.append(args)
            return super().madvise(*args)

    monkeypatch.setattr(mmap, "mmap", Spy)
    monkeypatch.setattr(F, "_POPULATE_MIN", 1 << 12)  # every output above 4 KB takes the mapped path
    g = torch.Generator().manual_seed(0)
    t = torch.randn(3000, 700, generator=g)
    mask = torch.rand(t.shape, generator=g) < 0.5
    assert torch.equal(F.compress(t, mask), t[mask])
    from workbench.masks.store import _pack, _unpack
    from workbench.masks.topk import lowest_k

    assert torch.equal(_unpack(_pack(mask), mask.shape), mask)
    got = lowest_k([lambda: t.abs()], 1_000_000, sample=4096)[0]
    want = torch.zeros(t.numel(), dtype=torch.bool)
    want[torch.argsort(t.abs().reshape(-1), stable=True)[:1_000_000]] = True
    assert torch.equal(got.reshape(-1), want)
    if sys.platform == "linux":
        assert calls and all(a == (F._MADV_POPULATE_WRITE,) for a in calls)
    big = F.empty(5000, torch.float64)
    big.fill_(2.5)  # writable
    assert big.dtype == torch.float64 and big.shape == (5000,) and float(big.sum()) == 12500.0


def test_empty_stops_mapping_beyond_its_budget(monkeypatch):
    import gc

    monkeypatch.setattr(F, "_POPULATE_MIN", 1 << 12)
    monkeypatch.setattr(F, "_MAX_MAPPINGS", F._LIVE[0] + 2)
    before = F._LIVE[0]
    kept = [F.empty(4096, torch.float32) for _ in range(4)]
    assert F._LIVE[0] - before == (2 if sys.platform == "linux" else 0)  # the last two are plain torch.empty
    assert all(k.shape == (4096,) for k in kept)
    del kept
    gc.collect()
    assert F._LIVE[0] == before  # each mapping is counted out when its tensor goes
