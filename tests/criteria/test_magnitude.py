"""criteria/magnitude.py: magnitude and L1 are |w|, L2 is w² (written into the caller's buffer when it fits), random
scores are uniform, reproducible per seed and parameter and different across them."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.criteria import ScoreContext
from workbench.criteria.magnitude import l1, l2, magnitude, random


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.integers(1, 5), min_size=1, max_size=3),
    st.sampled_from([torch.float32, torch.float64]),
    st.integers(0, 2**16),
)
def test_weight_scores_are_their_formulas_in_float32(shape, dtype, seed):
    w = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    ctx = ScoreContext("w", "t")
    for fn, want in ((magnitude, w.abs()), (l1, w.abs()), (l2, w.float().square())):  # L2 squares in float32
        s = fn(w, ctx)
        assert s.dtype == torch.float32 and torch.equal(s, want.float())
    r = random(w, ctx)
    assert r.shape == w.shape and r.dtype == torch.float32 and ((r >= 0) & (r < 1)).all()


def test_magnitude_writes_into_the_given_buffer_only_when_it_fits():
    w = torch.tensor([[-2.0, 1.0], [0.5, -0.25]])
    out = torch.full((2, 2), 9.0)
    assert magnitude(w, ScoreContext("w", "t", out=out)) is out and torch.equal(out, w.abs())
    wrong = torch.zeros(4)
    s = l1(w, ScoreContext("w", "t", out=wrong))
    assert s is not wrong and torch.equal(wrong, torch.zeros(4)) and torch.equal(s, w.abs())
    w64 = w.double()
    s = magnitude(w64, ScoreContext("w", "t", out=out))
    assert s is not out and s.dtype == torch.float32


@pytest.mark.parametrize("shape", [(3,), (4, 5), (2, 3, 3, 3)])
def test_random_scores_are_reproducible_per_seed_and_parameter(shape):
    w = torch.zeros(shape)
    a = random(w, ScoreContext("a.weight", "a", seed=0))
    assert torch.equal(random(w, ScoreContext("a.weight", "a", seed=0)), a)
    assert not torch.equal(random(w, ScoreContext("a.weight", "a", seed=1)), a)
    assert not torch.equal(random(w, ScoreContext("b.weight", "b", seed=0)), a)
