"""The k lowest scores of many tensors, without concatenating or sorting them.

`lowest_k` equals taking the first k of a *stable* argsort of all scores concatenated in order (ties go
to the earlier position), but it never holds more than one tensor's scores at a time: a radix select on
the scores' float bits finds the k-th smallest value in two counting passes (a 65,536-bin histogram of
the high 16 bits, then of the low 16 bits inside the one bucket that holds it), and a third pass builds
the masks: every score below that value, plus the first few equal to it, in position order.

Scores are recomputed by calling each tensor's score function once per pass, so a 200M-weight model needs
only the masks (1 byte per weight) on top of one tensor's scores; criteria that need data cache their
statistics (`ScoreContext.cache`), so recomputing them is cheap.

>>> import torch
>>> a, b = torch.tensor([3.0, 1.0, 2.0]), torch.tensor([1.0, 0.0])
>>> [m.tolist() for m in lowest_k([lambda: a, lambda: b], 3)]
[[False, True, False], [True, True]]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

__all__ = ["lowest_k", "sortable_keys"]

_BINS = 1 << 16


def sortable_keys(scores: Tensor, out: Tensor | None = None, tmp: Tensor | None = None) -> Tensor:
    """int32 keys that sort like the float32 scores (``-0.0`` equals ``0.0``; ``-inf`` first, NaN last).

    `out` and `tmp` (int32, at least ``scores.numel()`` long) are scratch buffers reused across calls; the
    result is then a view of `out`.

    >>> s = torch.tensor([-2.0, -0.0, 0.0, 1.5, float("-inf")])
    >>> torch.argsort(sortable_keys(s), stable=True).tolist()
    [4, 0, 1, 2, 3]
    """
    n = scores.numel()
    if out is None:
        bits = (scores.float() + 0.0).contiguous().view(torch.int32)  # a fresh tensor; + 0.0 turns -0.0 into 0.0
        flip = bits >> 31  # all ones for negative floats
    else:
        f = out[:n].view(torch.float32).view(scores.shape)
        torch.add(scores.float(), 0.0, out=f)
        bits = f.view(torch.int32)
        flip = torch.bitwise_right_shift(bits, 31, out=tmp[:n].view(scores.shape))  # type: ignore[index]
    flip &= 0x7FFFFFFF
    bits ^= flip  # negative floats: reverse their order below the non-negative ones
    return bits


class _Scratch:
    """Reused int32/bool buffers, so the passes touch the same memory instead of fresh pages each time."""

    def __init__(self) -> None:
        self.size = 0
        self.device: torch.device | None = None

    def get(self, n: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        if n > self.size or device != self.device:
            self.size, self.device = n, device
            self.a = torch.empty(n, dtype=torch.int32, device=device)
            self.b = torch.empty(n, dtype=torch.int32, device=device)
            self.m = torch.empty(n, dtype=torch.bool, device=device)
        return self.a, self.b, self.m


def _hist(values: Tensor) -> Tensor:
    return torch.bincount(values.reshape(-1), minlength=_BINS).to("cpu", torch.int64)


def lowest_k(score_fns: Sequence[Callable[[], Tensor]], k: int) -> list[Tensor]:
    """Bool masks, one per score function's tensor: True for the k lowest scores pooled over all of them."""
    shapes: list[tuple[torch.Size, torch.device]] = []
    hist = torch.zeros(_BINS, dtype=torch.int64)
    scratch = _Scratch()
    for fn in score_fns:  # pass 1: which high-16-bit bucket holds the k-th smallest key
        s = fn()
        shapes.append((s.shape, s.device))
        if k > 0:
            a, b, _ = scratch.get(s.numel(), s.device)
            key = sortable_keys(s, a, b)
            del s
            key >>= 16
            key += _BINS // 2
            hist += _hist(key)
    n = sum(sh.numel() for sh, _ in shapes)
    if k <= 0 or n == 0:
        return [torch.zeros(sh, dtype=torch.bool, device=d) for sh, d in shapes]
    k = min(k, n)
    cum = hist.cumsum(0)
    hi = int(torch.searchsorted(cum, torch.tensor(k)))
    below = int(cum[hi - 1]) if hi else 0
    high = hi - _BINS // 2
    hist2 = torch.zeros(_BINS, dtype=torch.int64)
    for fn in score_fns:  # pass 2: the low 16 bits of the k-th smallest key, inside that bucket
        s = fn()
        a, b, m = scratch.get(s.numel(), s.device)
        key = sortable_keys(s, a, b)
        del s
        hb = torch.bitwise_right_shift(key, 16, out=b[: key.numel()].view(key.shape))
        inside = torch.eq(hb, high, out=m[: key.numel()].view(key.shape))
        hist2 += _hist(key[inside] & 0xFFFF)
    cum2 = hist2.cumsum(0)
    lo = int(torch.searchsorted(cum2, torch.tensor(k - below)))
    below += int(cum2[lo - 1]) if lo else 0
    threshold = (high << 16) | lo  # the k-th smallest key, as a Python int (two's complement for negatives)
    ties = k - below  # how many keys equal to the threshold go, first positions first
    out = []
    for fn in score_fns:  # pass 3: masks
        s = fn()
        a, b, m = scratch.get(s.numel(), s.device)
        key = sortable_keys(s, a, b)
        del s
        mask = key < threshold
        if ties > 0:
            eq = torch.eq(key, threshold, out=m[: key.numel()].view(key.shape))
            idx = eq.reshape(-1).nonzero().reshape(-1)[:ties]
            mask.view(-1)[idx] = True
            ties -= idx.numel()
        out.append(mask)
    return out
