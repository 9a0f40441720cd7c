"""Block masks: R x C tiles of a weight seen as 2-D (out x in*kh*kw), ranked by their summed element score.

A block is one unit: the ratio is the share of blocks pruned (``k = round(ratio * n_blocks)``, as for any
unit). With the ``magnitude``/``l1`` criteria a block scores its L1 norm, with ``l2`` its squared
Frobenius norm. Weights pruned by earlier steps stay pruned and add nothing to their block's score; a
block with no live weight left counts as pruned (score ``-inf``), so it is among the first k and is
never revived. Ties go by position (row-major block order).

>>> import torch
>>> s = torch.tensor([[1.0, 1.0, 9.0, 9.0], [1.0, 1.0, 9.0, 9.0]])
>>> block_scores(s, 2, 2).tolist()
[[4.0, 36.0]]
>>> expand_blocks(torch.tensor([[True, False]]), 2, 2, s.shape).int()
tensor([[1, 1, 0, 0],
        [1, 1, 0, 0]], dtype=torch.int32)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["block_scores", "expand_blocks", "zero_blocks"]


def _grid(t: Tensor, r: int, c: int) -> Tensor:
    rows, cols = t.shape[0], math.prod(t.shape[1:])
    if rows % r or cols % c:
        raise ValueError(f"{r}x{c} blocks do not tile a {rows}x{cols} weight")
    return t.reshape(rows // r, r, cols // c, c)


def block_scores(scores: Tensor, r: int, c: int, current: Tensor | None = None) -> Tensor:
    """``(rows/R, cols/C)`` block scores: sum of live element scores; ``-inf`` for blocks with none alive."""
    s = scores.double()
    if current is not None:
        s = s.masked_fill(current.to(s.device), 0.0)
    out = _grid(s, r, c).sum((1, 3))
    if current is not None:
        dead = _grid(current.to(s.device), r, c).all(3).all(1)
        out = out.masked_fill(dead, -math.inf)
    return out


def expand_blocks(chosen: Tensor, r: int, c: int, shape: torch.Size) -> Tensor:
    """A block-level bool grid ``(rows/R, cols/C)`` as an element mask of `shape`."""
    nr, nc = chosen.shape
    return chosen.view(nr, 1, nc, 1).expand(nr, r, nc, c).reshape(shape)


def zero_blocks(weight: Tensor, r: int, c: int) -> Tensor:
    """``(rows/R, cols/C)`` bool grid: True where the R x C block of `weight` is entirely zero."""
    return (_grid(weight, r, c) == 0).all(3).all(1)
