"""activations.py: histogram entropy (known values, bounds, blind to sample order and scale), pooling a layer's output
to units, and unit statistics recorded through torch.fx or through hooks that never outlive the call."""

import math

import pytest
import torch
from conftest import assert_bitwise, assert_plain, snapshot
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from workbench.activations import histogram_entropy, unit_stats, units_of


def test_histogram_entropy_known_values():
    uniform = torch.arange(32, dtype=torch.float64)[:, None]  # one sample per bin: log2(32) = 5 bits
    h, dead = histogram_entropy(uniform, bins=32)
    assert h.item() == pytest.approx(5.0) and not dead.item()
    two = torch.tensor([[0.0], [0.0], [1.0], [1.0]])
    assert histogram_entropy(two, bins=8)[0].item() == pytest.approx(1.0)
    h, dead = histogram_entropy(torch.full((10, 1), 3.0))
    assert h.item() == 0.0 and dead.item()


# ---------------------------------------------------------------------------------------------- histogram_entropy


@settings(max_examples=40, deadline=None)
@given(
    st.integers(2, 40),  # samples
    st.integers(1, 5),  # units
    st.sampled_from([2, 8, 32]),  # bins
    st.integers(0, 2**16),
)
def test_entropy_is_within_its_bounds_per_column_and_blind_to_order_and_scale(n, units, bins, seed):
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(n, units, generator=g, dtype=torch.float64)
    h, dead = histogram_entropy(v, bins=bins)
    assert h.shape == dead.shape == (units,)
    assert (h >= 0).all() and (h <= math.log2(min(bins, n)) + 1e-9).all()
    for j in range(units):  # each column on its own
        hj, dj = histogram_entropy(v[:, j : j + 1], bins=bins)
        assert hj.item() == h[j].item() and dj.item() == dead[j].item()
    perm = torch.randperm(n, generator=g)
    assert torch.equal(histogram_entropy(v[perm], bins=bins)[0], h)  # a histogram: the order of samples is not seen
    assert torch.equal(histogram_entropy(v * 4.0, bins=bins)[0], h)  # bins span the column's range: scale-free


def test_a_constant_column_is_dead_whatever_its_value():
    v = torch.tensor([[1e6, -2.0, 0.0]]).repeat(7, 1)
    h, dead = histogram_entropy(v)
    assert dead.tolist() == [True, True, True] and h.tolist() == [0.0, 0.0, 0.0]


# ---------------------------------------------------------------------------------------------- units_of


def test_units_of_pools_all_but_samples_and_units():
    conv, lin = nn.Conv2d(1, 3, 1), nn.Linear(4, 5)
    x = torch.randn(2, 3, 4, 4)
    assert torch.equal(units_of(conv, x), x.mean((2, 3)))  # conv: channels are dim 1
    seq = torch.randn(2, 6, 5)
    torch.testing.assert_close(units_of(lin, seq), seq.mean(1))  # a Linear on sequences: the last dim
    flat = torch.randn(2, 5)
    assert units_of(lin, flat) is flat and units_of(lin, (flat, "state")) is flat  # tuples: the first output
    assert units_of(lin, torch.randn(7)).shape == (7, 1)


# ---------------------------------------------------------------------------------------------- unit_stats


class _MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 6)
        self.out = nn.Linear(6, 2)

    def forward(self, x):
        return self.out(torch.relu(self.fc(x)))


class _Untraceable(_MLP):
    def forward(self, x):
        h = self.fc(x)
        if h.sum() > 1e9:  # data-dependent control flow: torch.fx cannot trace it, so hooks are used
            h = h * 0
        return self.out(torch.relu(h))


@pytest.mark.parametrize("cls", [_MLP, _Untraceable])
def test_unit_stats_records_outputs_and_zero_shares_and_leaves_the_model_as_it_was(cls):
    torch.manual_seed(0)
    model = cls().train()
    x = torch.randn(10, 4)
    data = [(x[:6], torch.zeros(6, dtype=torch.long)), (x[6:], torch.zeros(4, dtype=torch.long))]
    snap = snapshot(model)
    stats = unit_stats(model, data, ["fc", "out"])
    assert_bitwise(model, snap)
    assert_plain(model)
    assert model.training and all(m.training for m in model.modules())  # eval mode only for the run
    assert stats.n == 10
    with torch.no_grad():
        fc = model.fc(x)
    torch.testing.assert_close(stats.pooled["fc"], fc.double(), rtol=1e-6, atol=1e-6)
    assert stats.pooled["out"].shape == (10, 2) and stats.pooled["fc"].dtype == torch.float64
    # APoZ: the share of zeros after the ReLU that follows fc (seen by fx), or after relu(output) (hooks)
    torch.testing.assert_close(stats.apoz["fc"], (torch.relu(fc) == 0).double().mean(0))
    assert stats.relu_found["fc"] == (cls is _MLP) and not stats.relu_found["out"]


def test_unit_stats_removes_its_hooks_when_the_model_fails_midway():
    model = _Untraceable()
    good = (torch.randn(3, 4), torch.zeros(3))
    bad = (torch.randn(3, 5), torch.zeros(3))  # the wrong width: fc raises on the second batch
    with pytest.raises(RuntimeError):
        unit_stats(model, [good, bad], ["fc"])
    assert_plain(model)
