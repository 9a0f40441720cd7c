"""The k lowest scores of many tensors, without concatenating or sorting them.

`lowest_k` equals taking the first k of a *stable* argsort of all scores concatenated in order (ties go
to the earlier position), but it never holds more than one tensor's scores at a time plus the masks
(1 byte per weight) and a thin band of candidates:

1. *sample*: up to 16,384 scores per tensor (all of a smaller one) give, weighted by how many scores each
   stands for, an estimate of the k-th smallest score and of its error (six standard deviations of the
   estimated count either way) — a bracket ``[lo, hi]``;
2. *select*: each tensor's mask starts as ``score < lo``; the scores inside the bracket (about 1% of them
   on a 200M-weight model) are kept with their positions, and the ``k - count(score < lo)`` lowest of them
   (ties by position) are added.

The bracket only decides how much work the second pass does, never the result: if it missed (the count
below `lo` exceeds k, or the band holds too few), or if the sample predicts a band too large to hold
(heavy ties at the k-th score, e.g. a plan re-applied at the ratio already reached), a radix select on
the scores' float bits (`_radix`: two 65,536-bin counting passes over the high and low 16 bits, a third
building the masks) gives the same masks with three passes instead of two.

Scores are compared as float32 (as the radix keys are), whatever dtype a score function returns. They are
recomputed by calling each tensor's score function once per pass; criteria that need data cache their
statistics (`ScoreContext.cache`), so recomputing them is cheap.

>>> import torch
>>> a, b = torch.tensor([3.0, 1.0, 2.0]), torch.tensor([1.0, 0.0])
>>> [m.tolist() for m in lowest_k([lambda: a, lambda: b], 3)]
[[False, True, False], [True, True]]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from .fastops import empty, scratch

__all__ = ["lowest_k", "sortable_keys"]

_BINS = 1 << 16
SAMPLE = 1 << 14  # scores sampled per tensor for the bracket
SIGMAS = 6.0  # bracket half-width, in standard deviations of the estimated count


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


def _radix(score_fns: Sequence[Callable[[], Tensor]], k: int) -> list[Tensor]:
    """`lowest_k` by a radix select on the float bits: three passes, any scores (ties, -inf, NaN last)."""
    shapes: list[tuple[torch.Size, torch.device]] = []
    hist = torch.zeros(_BINS, dtype=torch.int64)
    buf = _Scratch()
    for fn in score_fns:  # pass 1: which high-16-bit bucket holds the k-th smallest key
        s = fn()
        shapes.append((s.shape, s.device))
        if k > 0:
            a, b, _ = buf.get(s.numel(), s.device)
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
        a, b, m = buf.get(s.numel(), s.device)
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
        a, b, m = buf.get(s.numel(), s.device)
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


def lowest_k(score_fns: Sequence[Callable[[], Tensor]], k: int, *, sample: int = SAMPLE) -> list[Tensor]:
    """Bool masks, one per score function's tensor: True for the k lowest scores pooled over all of them.

    A score function may return the same buffer on every call (what is kept is copied). `sample` (scores
    drawn per tensor for the bracket) changes only the speed, never the masks."""
    shapes: list[tuple[torch.Size, torch.device]] = []
    xs: list[Tensor] = []
    ws: list[Tensor] = []
    var = 0.0
    gen = torch.Generator().manual_seed(0)
    for fn in score_fns:  # pass 1: a weighted sample of the scores
        s = fn().float()
        shapes.append((s.shape, s.device))
        n = s.numel()
        if k <= 0 or not n:
            continue
        flat = s.reshape(-1)
        if n <= sample:
            xs.append(flat.to("cpu", torch.float32, copy=True))  # a score function may reuse its buffer
            ws.append(torch.ones(n, dtype=torch.float64))
        else:
            idx = torch.randint(n, (sample,), generator=gen)
            xs.append(flat[idx.to(s.device)].float().cpu())
            ws.append(torch.full((sample,), n / sample, dtype=torch.float64))
            var += n * n / (4 * sample)  # variance bound of a sampled count: n^2 p(1-p) / S, p(1-p) <= 1/4
        del s, flat
    n = sum(sh.numel() for sh, _ in shapes)
    if k <= 0 or n == 0:
        return [torch.zeros(sh, dtype=torch.bool, device=d) for sh, d in shapes]
    k = min(k, n)
    x = torch.cat(xs)
    if bool(torch.isnan(x).any()):
        return _radix(score_fns, k)
    order = torch.argsort(x)
    x, cum = x[order], torch.cat(ws)[order].cumsum(0)
    margin = SIGMAS * math.sqrt(var) + 1.0
    j_lo = int(torch.searchsorted(cum, torch.tensor(k - margin, dtype=torch.float64)))
    j_hi = int(torch.searchsorted(cum, torch.tensor(k + margin, dtype=torch.float64)))
    lo = float(x[j_lo]) if k - margin > 0 and j_lo < x.numel() else -math.inf
    hi = float(x[j_hi]) if j_hi < x.numel() else math.inf
    # expected candidates: everything the sample puts in [lo, hi], ties at both ends included
    inside = float(cum[int(torch.searchsorted(x, torch.tensor(hi), right=True)) - 1]) if hi < math.inf else n
    if lo > -math.inf:
        first = int(torch.searchsorted(x, torch.tensor(lo)))
        inside -= float(cum[first - 1]) if first else 0.0
    if inside > max(8 * margin, n / 32):
        return _radix(score_fns, k)
    return _banded(score_fns, shapes, k, lo, hi)


def _positions(band: Tensor) -> Tensor:
    if band.device.type == "cpu":
        import numpy as np

        return torch.from_numpy(np.flatnonzero(band.reshape(-1).numpy()))
    return band.reshape(-1).nonzero().reshape(-1)


def _banded(score_fns, shapes, k: int, lo: float, hi: float) -> list[Tensor]:
    """Pass 2: masks = scores below `lo`, plus the lowest of the scores in ``[lo, hi]`` to make k."""
    masks, cands = [], []
    below = 0
    bands = scratch(((d, sh.numel()) for sh, d in shapes), torch.bool)
    for fn, (shape, device) in zip(score_fns, shapes):
        s = fn().float()
        mask = empty(shape.numel(), torch.bool, device).view(shape)  # row-major, whatever the scores' strides
        if lo > -math.inf:
            torch.lt(s, lo, out=mask)
        else:
            mask.zero_()
        band = torch.le(s, hi, out=bands[device][: shape.numel()].view(shape))
        band.logical_xor_(mask)  # lo <= hi, so what is below lo is inside <= hi: xor leaves lo <= s <= hi
        pos = _positions(band).to(s.device)
        cands.append((pos, s.reshape(-1)[pos]))
        below += int(torch.count_nonzero(mask))
        masks.append(mask)
        del s
    need = k - below
    have = sum(p.numel() for p, _ in cands)
    if need < 0 or need > have:  # the bracket missed (a rare sample): the exact fallback
        return _radix(score_fns, k)
    if need == 0:
        return masks
    vals = torch.cat([v.cpu() for _, v in cands])
    t = vals.kthvalue(need).values
    chosen = vals < t
    ties = need - int(chosen.sum())
    if ties > 0:
        chosen[(vals == t).nonzero().reshape(-1)[:ties]] = True
    i = 0
    for mask, (pos, v) in zip(masks, cands):
        c = chosen[i : i + v.numel()].to(pos.device)
        mask.view(-1)[pos[c]] = True
        i += v.numel()
    return masks
