"""N:M masks: in every group of M consecutive weights along the input dimension keep the N best.

For a Linear weight ``(out, in)`` the groups are ``w[o, j*M:(j+1)*M]``; for a conv weight
``(out, in/groups, kh, kw)`` they run along dim 1 at each kernel position ``(o, :, y, x)``, which is the
layout NVIDIA's 2:4 sparse tensor cores need after the usual im2col (and what
`torch.sparse.to_sparse_semi_structured` checks on a Linear weight).

Already-pruned weights score ``-inf``, so they are the first to go in their group and stay pruned: a group
that already has more than ``M - N`` zeros keeps them all (it has *at most* N non-zeros, which is what the
pattern and the hardware require). Ties go by position (stable sort), so the result is deterministic.

>>> import torch
>>> w = torch.tensor([[4.0, 1.0, 3.0, 2.0, -1.0, 5.0, 0.5, -6.0]])
>>> nm_mask(w.abs(), 2, 4).int()
tensor([[0, 1, 0, 1, 1, 0, 1, 0]], dtype=torch.int32)
>>> bool(is_nm_sparse(w.masked_fill(nm_mask(w.abs(), 2, 4), 0), 2, 4))
True
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["is_nm_sparse", "nm_groups", "nm_mask"]


def nm_groups(t: Tensor, m: int) -> Tensor:
    """`t` (a Linear or Conv weight-shaped tensor) as ``(..., in/M, M)`` groups along dim 1 (a copy)."""
    if t.dim() < 2 or t.shape[1] % m:
        raise ValueError(f"N:M needs a tensor of >= 2 dims whose dim 1 is a multiple of {m}, got {tuple(t.shape)}")
    moved = t.movedim(1, -1)
    return moved.reshape(*moved.shape[:-1], t.shape[1] // m, m)


def _ungroup(g: Tensor, shape: torch.Size) -> Tensor:
    moved_shape = (shape[0], *shape[2:], shape[1])
    return g.reshape(moved_shape).movedim(-1, 1)


def nm_mask(scores: Tensor, n: int, m: int, current: Tensor | None = None) -> Tensor:
    """Boolean mask (True = pruned) removing the ``M - N`` lowest scores of every N:M group, plus `current`."""
    if not 0 < n < m:
        raise ValueError(f"N:M needs 0 < N < M, got {n}:{m}")
    s = scores.float()
    if current is not None:
        s = s.masked_fill(current.to(s.device), -math.inf)
    g = nm_groups(s, m)
    drop = torch.argsort(g, dim=-1, stable=True)[..., : m - n]
    mask = torch.zeros(g.shape, dtype=torch.bool, device=g.device).scatter_(-1, drop, True)
    out = _ungroup(mask, scores.shape)
    return out if current is None else out | current.to(out.device)


def is_nm_sparse(weight: Tensor, n: int, m: int) -> Tensor:
    """True where every N:M group of `weight` (along dim 1) has at most N non-zeros (a 0-dim bool tensor)."""
    if weight.dim() < 2 or weight.shape[1] % m:
        return torch.tensor(False)
    return ((nm_groups(weight, m) != 0).sum(-1) <= n).all()
