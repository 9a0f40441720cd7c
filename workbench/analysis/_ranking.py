"""A row of single weights ranked without sorting them all: the k lowest scores in O(n) per ratio.

`weight_ranking` (``workbench.masks.select``) argsorts every score of a layer once, which is the right trade for
the thousands-to-millions of weights of most layers but costs tens of seconds on a 100M-weight Linear (VGG's
25088 x 4096 classifier). `PrefixRanking` gives the same masks (the ``k`` lowest scores, ties by position, exactly
what a stable argsort's first ``k`` entries are) and, for the sensitivity estimate, sums of any per-weight value
over those ``k`` weights, without a full sort: scores are bucketed by the top 16 bits of an order-preserving
integer key of their float32 value (for non-negative scores, the upper half of the float's bits as int16), the buckets counted (and a per-weight value summed per bucket) in one pass, and
only the bucket holding the k-th score is sorted. Equal scores always share a bucket, so ties resolve by position as in the stable sort. Small rows
(up to `SORT_BELOW` weights) are simply argsorted.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import torch
from torch import Tensor

from ..masks.granularity import n_to_prune

__all__ = ["PrefixRanking"]

SORT_BELOW = 1 << 16  # rows with at most this many weights are argsorted (fast enough, and simplest)


class PrefixRanking:
    """Duck-types `workbench.masks.select.Ranking` for the weights of `params` (flattened and concatenated in
    that order): `masks(ratio)`, `n`, `to_masks`, and `order` (a full stable argsort, computed only if asked)."""

    def __init__(self, params: Sequence[str], scores: Sequence[Tensor]):
        self.params = tuple(params)
        self._shapes = [s.shape for s in scores]
        self._devices = [s.device for s in scores]
        flat = [s.reshape(-1).float().to(scores[0].device) for s in scores]
        self.flat = flat[0] if len(flat) == 1 else torch.cat(flat)  # one tensor: no copy
        self.n = self.flat.numel()
        self._order: Tensor | None = None
        self._ids: Tensor | None = None  # bucket of every score (int32), for large rows
        if self.n <= SORT_BELOW:
            self._order = torch.argsort(self.flat, stable=True)
        else:
            self._bucket()

    # the Ranking interface ---------------------------------------------------------------------
    @property
    def order(self) -> Tensor:
        if self._order is None:
            self._order = torch.argsort(self.flat, stable=True)
        return self._order

    def to_masks(self, chosen: Tensor) -> dict[str, Tensor]:
        out, i = {}, 0
        for p, shape, dev in zip(self.params, self._shapes, self._devices):
            k = shape.numel()
            out[p] = chosen[i : i + k].view(shape).to(dev)
            i += k
        return out

    def masks(self, ratio: float) -> dict[str, Tensor]:
        return self.to_masks(self.chosen(n_to_prune(ratio, self.n)))

    # selection ---------------------------------------------------------------------------------
    def chosen(self, k: int) -> Tensor:
        """Boolean vector over the flat scores: the `k` lowest, ties by position."""
        if self._ids is None:
            out = torch.zeros(self.n, dtype=torch.bool, device=self.flat.device)
            out[self.order[:k]] = True
            return out
        if k == 0:
            return torch.zeros(self.n, dtype=torch.bool, device=self.flat.device)
        b, sel = self._locate(k)
        out = self._ids < b
        out[sel] = True
        return out

    def prefix_sums(self, values: Tensor, ks: Sequence[int], exact: bool = True) -> list[float]:
        """For each k: the sum of `values` (flat, laid out like the scores) over the `k` lowest-scoring weights.

        ``exact=False`` (large rows only) takes, of the bucket holding the k-th score, the share of its sum that
        its part below the k-th score has of its count, instead of finding those weights: no pass over the
        bucket ids per k. Scores in one bucket agree in sign, exponent and 7 mantissa bits (within 1%), so this
        moves less than one bucket's sum; the sensitivity estimate uses it."""
        if self._ids is None:
            c = torch.cumsum(values[self.order], 0, dtype=torch.float64)
            return [float(c[k - 1]) if k > 0 else 0.0 for k in ks]
        if exact:
            self._locate_all(ks)
        per_bucket = torch.bincount(self._ids, weights=values, minlength=self._nb).double()  # in `values`' dtype
        below = torch.cumsum(per_bucket, 0)
        out = []
        for k in ks:
            if k == 0:
                out.append(0.0)
                continue
            if exact:
                b, sel = self._locate(k)
                part = float(values[sel].double().sum())
            else:
                b = int(torch.searchsorted(self._cum, torch.tensor([k], device=self._cum.device))[0])
                count = int(self._cum[b]) - (int(self._cum[b - 1]) if b > 0 else 0)
                part = float(per_bucket[b]) * (k - (int(self._cum[b - 1]) if b > 0 else 0)) / max(count, 1)
            out.append((float(below[b - 1]) if b > 0 else 0.0) + part)
        return out

    def _bucket(self) -> None:
        # an order-preserving integer key of each float32 score (-0.0 folded onto 0.0, negatives' low bits flipped),
        # its top 16 bits the bucket: equal scores share a bucket and buckets are ordered like their scores
        if bool(self.flat.view(torch.int32).min() >= 0) and sys.byteorder == "little":
            # no sign bit set (magnitudes; not -0.0): the float's bits already are such a key, and its top 16 bits, the
            # upper int16 of each int32 (little-endian), are the bucket, 0..32767: one copy of half the size
            self._ids = self.flat.view(torch.int16)[1::2].contiguous()
            self._nb = 1 << 15
        else:
            bits = (self.flat + 0.0).view(torch.int32)
            key = bits ^ ((bits >> 31) & 0x7FFFFFFF)
            self._ids = key.bitwise_right_shift_(16).add_(32768)  # in place: no third copy of a 100M-weight row
            self._nb = 1 << 16
        self._cum = torch.cumsum(torch.bincount(self._ids, minlength=self._nb), 0)
        self._found: dict[int, tuple[int, Tensor]] = {}

    def _locate_all(self, ks: Sequence[int]) -> None:
        """Find the buckets of several k at once (one pass over the bucket ids)."""
        todo = [k for k in ks if k > 0 and k not in self._found]
        if not todo:
            return
        bs = torch.searchsorted(self._cum, torch.tensor(todo, device=self._cum.device)).tolist()
        lut = torch.zeros(self._nb, dtype=torch.bool, device=self._ids.device)
        lut[torch.tensor(bs, device=self._ids.device)] = True
        if self._ids.device.type == "cpu":  # numpy's gather by int32 indices is ~2x torch's here
            hit = torch.from_numpy(lut.numpy()[self._ids.numpy()])
        else:
            hit = lut[self._ids]
        where = hit.nonzero().squeeze(1)  # ascending positions of the weights in those buckets
        ids = self._ids[where]
        for k, b in zip(todo, bs):
            before = int(self._cum[b - 1]) if b > 0 else 0
            w = where[ids == b]
            vals = self.flat[w]
            if vals.numel() and bool(vals.min() == vals.max()):  # one tied value: by position
                sel = w[: k - before]
            else:
                sel = w[torch.argsort(vals, stable=True)[: k - before]]
            self._found[k] = (b, sel)

    def _locate(self, k: int) -> tuple[int, Tensor]:
        """The bucket `b` holding the k-th lowest score, and the positions of the weights of that bucket that are
        among the k lowest (all lower buckets are wholly among them)."""
        self._locate_all([k])
        return self._found[k]
