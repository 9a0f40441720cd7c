"""masks/_packed.py: masks packed to one bit per element (little bit order, across numpy's 1M-element chunks) unpack
to the same mask; a step's record counts what it removed; a tensor's fingerprint moves with every in-place write."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.masks._packed import Step, _Delta, _fingerprint, _pack, _unpack


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 5), min_size=1, max_size=4), st.floats(0, 1), st.integers(0, 2**16))
def test_any_shape_round_trips_in_an_eighth_of_the_bytes(shape, density, seed):
    g = torch.Generator().manual_seed(seed)
    m = torch.rand(shape, generator=g) < density
    packed = _pack(m)
    assert packed.dtype == torch.uint8 and packed.numel() == (m.numel() + 7) // 8
    back = _unpack(packed, m.shape)
    assert back.dtype == torch.bool and back.shape == m.shape and torch.equal(back, m)


@pytest.mark.parametrize("n", [(1 << 20) - 3, 1 << 20, (1 << 20) + 13, 2 * (1 << 20) + 8])
def test_masks_across_the_million_element_chunks_round_trip(n):
    g = torch.Generator().manual_seed(n)
    m = torch.rand(n, generator=g) < 0.3
    m[-1] = True  # the last element, in the last (partial) byte
    assert torch.equal(_unpack(_pack(m), m.shape), m)


def test_bits_are_little_endian_within_a_byte():
    m = torch.zeros(10, dtype=torch.bool)
    m[[0, 3, 9]] = True
    assert _pack(m).tolist() == [0b1001, 0b10]  # elements 0 and 3 in byte 0, element 9 is bit 1 of byte 1


def test_a_step_counts_what_its_deltas_removed():
    m = torch.tensor([[True, False, True], [False, False, True]])
    d = _Delta(_pack(m), torch.tensor([1.5, -2.0, 3.0]), m.shape)
    assert d.count == 3 and torch.equal(d.mask(), m) and d.nbytes == 1 + 3 * 4
    empty = _Delta(_pack(torch.zeros(4, dtype=torch.bool)), torch.zeros(0), torch.Size([4]))
    step = Step({"a.weight": d, "b.weight": empty}, {"kind": "prune"})
    assert step.removed == 3 and step.info["kind"] == "prune"
    assert Step({}).removed == 0 and dict(Step({}).info) == {}


def test_a_fingerprint_moves_with_every_in_place_write_and_not_with_a_read():
    t = torch.zeros(3, 4)
    before = _fingerprint(t)
    _ = t.sum(), t.clone(), t[0]  # reads and views do not write
    assert _fingerprint(t) == before
    t.add_(1)
    assert _fingerprint(t) != before and _fingerprint(t)[:4] == before[:4]  # same storage, a new version
    t.data = torch.zeros(3, 4)
    assert _fingerprint(t)[0] != before[0]  # new data
