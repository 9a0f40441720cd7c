"""OWL (Yin et al. 2024): per-block sparsities from the blocks' share of outlier activations.

A block's outlier ratio ``D_l`` is the share of Wanda scores ``|W_ij| * ||X_j||`` of all its linear layers that exceed
``M`` times their mean over the block (``M = 5``), measured on the dense model (one layer-wise pass). Blocks with more
outliers are pruned less:

    s_l = s - 2 * lambda * (D~_l - mean(D~)),   D~_l = (D_l - min D) / (max D - min D)

so the sparsities span exactly ``2 * lambda`` (``lambda = 0.08``: from ``s - 0.08`` to ``s + 0.08`` around the middle)
and their mean is ``s``, as in the authors' code (the paper's ``s_l = 1 - D_l`` rescaled into ``[s - lambda,
s + lambda]``). Every block prunes all its linear layers at its ``s_l``. Equal outlier ratios give every block ``s``.

>>> ratios = owl_ratios([0.01, 0.02, 0.03], 0.5, lam=0.08)
>>> [round(r, 2) for r in ratios], round(sum(ratios) / 3, 6)
([0.58, 0.5, 0.42], 0.5)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..errors import PlanError
from .methods import wanda_scores

__all__ = ["outlier_ratio", "owl_ratios"]


def outlier_ratio(weights: Sequence[Tensor], sqs: Sequence[Tensor], m: float = 5.0) -> float:
    """Share of the Wanda scores of the layers (weights ``(out, in)`` with their inputs' sums of squares) above `m`
    times their mean over all of them."""
    total, n = 0.0, 0
    for w, sq in zip(weights, sqs):
        s = wanda_scores(w.float(), sq)
        total += float(s.sum(dtype=torch.float64))
        n += s.numel()
    mean = total / max(n, 1)
    above = sum(int((wanda_scores(w.float(), sq) > m * mean).sum()) for w, sq in zip(weights, sqs))
    return above / max(n, 1)


def owl_ratios(outliers: Sequence[float], sparsity: float, lam: float = 0.08) -> list[float]:
    """Per-block sparsities from the blocks' outlier ratios (see the module docstring); their mean is `sparsity`."""
    lo, hi = min(outliers), max(outliers)
    if hi == lo:
        return [float(sparsity)] * len(outliers)
    norm = [(d - lo) / (hi - lo) for d in outliers]
    mean = sum(norm) / len(norm)
    ratios = [float(sparsity - 2 * lam * (d - mean)) for d in norm]
    bad = [(i, r) for i, r in enumerate(ratios) if not 0.0 <= r < 1.0]
    if bad:
        i, r = bad[0]
        raise PlanError(
            f"OWL gives block {i} the sparsity {r:.3f}, outside [0, 1) (sparsity {sparsity}, owl_lambda {lam}); "
            "use a smaller owl_lambda or a sparsity further from 0 and 1"
        )
    return ratios
