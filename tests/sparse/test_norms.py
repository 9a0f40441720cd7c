"""sparse/norms.py: norm layers after the hidden size was cut compute what the full-width norm computed with the
removed channels at zero (LayerNorm by ZeroPaddedLayerNorm, RMSNorm by rescaling its epsilon)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from workbench.sparse.norms import ZeroPaddedLayerNorm, rescale_rms_

T = pytest.importorskip("transformers")


def test_norms_count_the_removed_channels_at_zero():
    torch.manual_seed(0)
    x = torch.randn(3, 5, 12)
    x[..., 8:] = 0
    ln = torch.nn.LayerNorm(12)
    rms = T.models.llama.modeling_llama.LlamaRMSNorm(12, eps=1e-3)
    with torch.no_grad():
        for n in (ln, rms):
            n.weight.normal_()
            n.weight[8:] = 0
        ln.bias.normal_()
        ln.bias[8:] = 0
        want_ln, want_rms = ln(x)[..., :8], rms(x)[..., :8]
        small = ZeroPaddedLayerNorm.cut(ln, torch.arange(8))
        torch.testing.assert_close(small(x[..., :8]), want_ln, rtol=1e-6, atol=1e-6)
        again = ZeroPaddedLayerNorm.cut(small, torch.arange(6))  # a second cut still counts all 12 channels
        assert again.full_size == 12
        rms.weight = torch.nn.Parameter(rms.weight[:8].clone())
        rescale_rms_(rms, 12, 8, "rms")
        torch.testing.assert_close(rms(x[..., :8]), want_rms, rtol=1e-6, atol=1e-6)
        assert rms.variance_epsilon == pytest.approx(1e-3 * 12 / 8)


class _RMS(nn.Module):
    """An RMS norm as Llama (``x / rms * w``) or Gemma (``x / rms * (1 + w)``) writes it, with an ``eps``."""

    def __init__(self, d: int, plus_one: bool, eps: float = 1e-2):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(d))
        self.eps, self.plus_one = eps, plus_one

    def forward(self, x):
        y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return y * ((1 + self.weight) if self.plus_one else self.weight)


cuts = st.tuples(st.integers(2, 24), st.floats(0.1, 0.9), st.booleans(), st.booleans(), st.integers(0, 2**16))


@settings(max_examples=40, deadline=None)
@given(cuts)
def test_a_cut_layer_norm_computes_the_full_one_with_the_removed_channels_at_zero(case):
    d, share, affine, bias, seed = case
    g = torch.Generator().manual_seed(seed)
    keep = torch.randperm(d, generator=g)[: max(1, int(d * share))].sort().values  # anywhere, not only a prefix
    ln = nn.LayerNorm(d, eps=1e-3, elementwise_affine=affine, bias=bias)
    with torch.no_grad():
        for p in ln.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    x = torch.randn(2, 3, d, generator=g)
    removed = torch.ones(d, dtype=torch.bool)
    removed[keep] = False
    x[..., removed] = 0
    small = ZeroPaddedLayerNorm.cut(ln, keep)
    assert small.normalized_shape == (len(keep),) and small.full_size == d and small.eps == ln.eps
    with torch.no_grad():
        torch.testing.assert_close(small(x[..., keep]), ln(x)[..., keep], rtol=1e-5, atol=1e-5)
        # a second cut still counts every channel of the first norm, and equals one cut by the composed index
        again = ZeroPaddedLayerNorm.cut(small, torch.arange(0, len(keep), 2))
        x2 = x.clone()
        x2[..., keep[1::2]] = 0
        assert again.full_size == d
        torch.testing.assert_close(again(x2[..., keep[::2]]), ln(x2)[..., keep[::2]], rtol=1e-5, atol=1e-5)


def test_a_cut_copies_the_kept_parameters():
    ln = nn.LayerNorm(6)
    small = ZeroPaddedLayerNorm.cut(ln, torch.tensor([0, 2]))
    with torch.no_grad():
        ln.weight.fill_(7.0)
    assert small.weight.tolist() == [1.0, 1.0] and small.weight.requires_grad
    assert "full_size=6" in repr(small)


@pytest.mark.parametrize("plus_one", [False, True], ids=["rms", "rms1p"])
@pytest.mark.parametrize(("before", "after"), [(12, 8), (7, 1), (16, 15)])
def test_a_rescaled_rms_norm_computes_the_full_one_with_the_removed_channels_at_zero(plus_one, before, after):
    torch.manual_seed(before * after)
    full = _RMS(before, plus_one).double()
    x = torch.randn(4, before, dtype=torch.float64)
    x[:, after:] = 0
    with torch.no_grad():
        want = full(x)[:, :after]
        cut = _RMS(after, plus_one).double()
        cut.weight.copy_(full.weight[:after])
        rescale_rms_(cut, before, after, "rms1p" if plus_one else "rms")
        torch.testing.assert_close(cut(x[:, :after]), want, rtol=1e-10, atol=1e-10)
    assert cut.eps == pytest.approx(1e-2 * before / after)
