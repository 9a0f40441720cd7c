"""Norm layers after the hidden size was cut: they compute what the full-width norm computed with those channels
at zero.

Pruning a transformer's hidden size (granularity ``hidden``) zeroes channels of the residual stream; the masked
model's norms still normalise over all `full_size` channels, the zeros included. A shrunk norm over the kept
channels alone would compute other statistics, so the shrunk model would not compute what the masked one computes
(Torch-Pruning accepts that and relies on fine-tuning; the workbench keeps shrink exact):

- ``nn.LayerNorm`` becomes `ZeroPaddedLayerNorm`: mean and variance as if the removed channels were there at zero;
- an RMS norm (``x / rms(x) * w``) stays the model's own class: ``rms`` over `full_size` channels is
  ``sqrt(kept / full_size)`` times the one over the kept channels, so its weight is scaled by
  ``sqrt(full / kept)`` and its eps by ``full / kept`` (`rescale_rms_`), exactly.

>>> import torch
>>> ln = torch.nn.LayerNorm(6)
>>> x = torch.randn(2, 6); x[:, 4:] = 0
>>> with torch.no_grad(): ln.weight[4:] = 0; ln.bias[4:] = 0
>>> small = ZeroPaddedLayerNorm.cut(ln, torch.arange(4))
>>> torch.allclose(small(x[:, :4]), ln(x)[:, :4], atol=1e-6)
True
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ZeroPaddedLayerNorm", "rescale_rms_"]


class ZeroPaddedLayerNorm(nn.LayerNorm):
    """A LayerNorm over the last dimension whose statistics count `full_size - normalized_shape[0]` more channels
    at zero (the channels a hidden-size prune removed)."""

    full_size: int

    @classmethod
    def cut(cls, ln: nn.LayerNorm, keep: Tensor) -> ZeroPaddedLayerNorm:
        """A new norm keeping channels `keep` of `ln` (an ``nn.LayerNorm`` or a `ZeroPaddedLayerNorm`)."""
        full = getattr(ln, "full_size", ln.normalized_shape[-1])
        new = cls.__new__(cls)
        nn.Module.__init__(new)
        new.normalized_shape = (int(keep.numel()),)
        new.eps = ln.eps
        new.elementwise_affine = ln.elementwise_affine
        for name in ("weight", "bias"):
            p = getattr(ln, name, None)
            new.register_parameter(name, None if p is None else nn.Parameter(p.detach()[keep].clone(), p.requires_grad))
        new.full_size = int(full)
        return new

    def forward(self, x: Tensor) -> Tensor:
        # the fused layer_norm over the full width, the removed channels put back as zeros at the end (their
        # weight and bias zero too), then only the kept channels: cheaper than computing the statistics by hand
        pad = self.full_size - x.shape[-1]
        w = None if self.weight is None else F.pad(self.weight, (0, pad))
        b = None if self.bias is None else F.pad(self.bias, (0, pad))
        return F.layer_norm(F.pad(x, (0, pad)), (self.full_size,), w, b, self.eps)[..., : x.shape[-1]]

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, full_size={self.full_size}, eps={self.eps}"


def rescale_rms_(norm: nn.Module, before: int, after: int, form: str) -> None:
    """Make an RMS norm whose weight was cut from `before` to `after` channels compute what it computed with the
    removed channels at zero: ``form`` ``"rms"`` (``x / rms * w``) or ``"rms1p"`` (``x / rms * (1 + w)``)."""
    s = math.sqrt(before / after)
    with torch.no_grad():
        w = norm.weight
        if form == "rms":
            w.mul_(s)
        else:
            w.copy_((1 + w.double()) * s - 1)
    for a in ("eps", "variance_epsilon"):
        v = getattr(norm, a, None)
        if isinstance(v, float):
            setattr(norm, a, v * before / after)
            return
