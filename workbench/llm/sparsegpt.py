"""SparseGPT (Frantar & Alistarh 2023): one-shot pruning with OBS updates of the kept weights from a calibration Hessian.

For a linear layer with weight ``W`` (out x in) and calibration inputs ``X`` (in x rows), the layer's output error
``||W X - W' X||^2`` has the Hessian ``H = 2 X X^T`` (the same for every row). SparseGPT:

1. dampens it, ``H + lambda I`` with ``lambda = damp * mean(diag H)`` (``damp`` 1% by default); inputs that were
   always zero (``H_jj = 0``) get ``H_jj = 1`` and their weights are zeroed, as the reference code does;
2. takes ``U``, the upper Cholesky factor of ``H^-1`` (``H^-1 = U^T U``, from one Cholesky of H in reversed order
   and a triangular solve): row j of U is the OBS update direction for
   column j once the columns before it are fixed, and ``U_jj^2`` the matching ``[H^-1]_jj``;
3. walks the columns in blocks of ``blocksize`` (128): at the start of a block (unstructured) or of each group of M
   columns (N:M) the mask is chosen from ``w^2 / U_jj^2`` with the weights as updated so far, within each row (every
   row loses the same share: ``int(in * sparsity)``, spread over the blocks) or within each N:M group; then column by
   column the pruned weights are zeroed and their error ``w_j / U_jj`` is spread over the later columns of the block
   (``W[:, j:] -= err_j U[j, j:]``), and once per block over all columns after it (the lazy batched update).

The kept weights change, so a `Workbench` step records them (undo is bitwise). One layer's Hessian (in x in, float32;
float64 for a float64 model) and a working copy of its weight are held at a time.

With a single pruned weight in column 0 and no dampening this is exactly the closed-form OBS update
``w' = w - w_0 / [H^-1]_00 * H^-1[0, :]``:

>>> import torch
>>> _ = torch.manual_seed(0); X = torch.randn(64, 4, dtype=torch.float64)
>>> w = torch.tensor([[0.01, 1.0, -2.0, 0.5]], dtype=torch.float64); H = 2 * X.T @ X
>>> w2 = w.clone(); mask = sparsegpt_(w2, H.clone(), 0.25, damp=0.0)
>>> Hinv = torch.linalg.inv(H); expect = w - w[0, 0] / Hinv[0, 0] * Hinv[0]
>>> mask.int().tolist(), torch.allclose(w2, expect)
([[1, 0, 0, 0]], True)
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..errors import ModelError
from .calibrate import LayerStats
from .methods import Pattern, check_nm, register_method

__all__ = ["sparsegpt_"]

CHUNK = 1024  # columns of the triangular inverse solved at once
SUB = 8  # columns updated one by one before the rest of the block gets one matrix product


def _upper_inverse_cholesky(H: Tensor, damp: float) -> Tensor:
    """U with ``(H + damp * mean(diag H) I)^-1 = U^T U``, upper triangular, computed in H's memory (returned).

    With J the order reversal, ``J H J = L L^T`` (Cholesky) gives ``H^-1 = (J L^-1 J)^T (J L^-1 J)`` and ``J L^-1 J``
    is upper triangular with a positive diagonal: it is U. One Cholesky and one triangular solve (about 4x faster on
    a CPU than the Cholesky inverse and a second Cholesky), in H's own memory."""
    n = H.shape[0]
    diag = torch.diagonal(H)
    if damp:
        diag.add_(damp * float(diag.mean()))
    _reverse_(H)
    info = torch.zeros((), dtype=torch.int32, device=H.device)
    torch.linalg.cholesky_ex(H, out=(H, info))
    if int(info):
        raise ModelError(
            f"the calibration Hessian is not positive definite (minor {int(info)} of the reversed order fails) with "
            f"dampening {damp}; raise damp (e.g. damp=0.1) or use more calibration samples"
        )
    # U = J L^-1 J: the columns c0..c1 of L^-1 (zero above row c0) are rows 0..n-c0 and columns n-c1..n-c0 of U,
    # written into H's strict upper triangle, which L (lower) does not use; the diagonal aside until L is done
    udiag = torch.empty(n, dtype=H.dtype, device=H.device)
    for c0 in range(0, n, CHUNK):
        c1 = min(c0 + CHUNK, n)
        rhs = torch.eye(n - c0, c1 - c0, dtype=H.dtype, device=H.device)
        block = torch.linalg.solve_triangular(H[c0:, c0:], rhs, upper=False).flip((0, 1))  # reads L only
        del rhs
        udiag[n - c1 : n - c0] = torch.diagonal(block, offset=block.shape[1] - block.shape[0])
        H[: n - c0, n - c1 : n - c0].add_(block.triu_(1 - (n - c1)))  # only where row < column: zeros of L
        del block
    H.triu_(1)
    torch.diagonal(H).copy_(udiag)
    return H


def _reverse_(t: Tensor, chunk: int = 1 << 20) -> Tensor:
    """``t.flip((0, 1))`` in place for a contiguous matrix (the reversed flat order), a chunk at a time."""
    flat = t.view(-1)
    n = flat.numel()
    for i in range(0, n // 2, chunk):
        j = min(i + chunk, n // 2)
        head = flat[i:j].clone()
        flat[i:j] = flat[n - j : n - i].flip(0)
        flat[n - j : n - i] = head.flip(0)
    return t


@torch.no_grad()
def sparsegpt_(
    W: Tensor,
    H: Tensor,
    sparsity: float,
    pattern: Pattern | None = None,
    current: Tensor | None = None,
    *,
    damp: float = 0.01,
    blocksize: int = 128,
) -> Tensor:
    """Prune `W` (out x in, float) in place with SparseGPT given ``H = 2 X X^T`` (in x in; overwritten); returns the
    mask (True = pruned). `current`: elements already pruned (they stay pruned and count towards the sparsity)."""
    cols = W.shape[1]
    if pattern is not None:
        check_nm(W, pattern)
        if blocksize % pattern.m:
            blocksize = pattern.m * max(1, blocksize // pattern.m)
    H = H.to(W.dtype)
    dead = torch.diagonal(H) == 0
    if bool(dead.any()):
        H[dead, dead] = 1.0
        W[:, dead] = 0.0
    U = _upper_inverse_cholesky(H, damp)  # in H's memory
    mask = torch.zeros(W.shape, dtype=torch.bool, device=W.device)
    total = int(cols * sparsity)
    sub = pattern.m * max(1, SUB // pattern.m) if pattern is not None else SUB
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        count = i2 - i1
        Wt = W[:, i1:i2].t().contiguous()  # the block's columns as contiguous rows
        Qt = torch.zeros_like(Wt)
        Et = torch.zeros_like(Wt)
        U1 = U[i1:i2, i1:i2]
        d1 = torch.diagonal(U1)
        cur = None if current is None else current[:, i1:i2].t()
        maskt = torch.zeros(Wt.shape, dtype=torch.bool, device=W.device)
        if pattern is None:  # the block's share of every row, by w^2 / U_jj^2 (sorted along contiguous rows)
            k = int(i2 * sparsity) - int(i1 * sparsity) if i2 < cols else total - int(i1 * sparsity)
            scores = W[:, i1:i2].square() / d1.square()[None, :]
            if current is not None:
                scores.masked_fill_(current[:, i1:i2], -math.inf)
            if k:
                rows_mask = torch.zeros(scores.shape, dtype=torch.bool, device=W.device)
                rows_mask.scatter_(1, torch.argsort(scores, dim=1, stable=True)[:, :k], True)
                maskt = rows_mask.t().contiguous()
            if cur is not None:
                maskt |= cur
        for s1 in range(0, count, sub):  # sub-blocks: small column updates, then one matrix product for the rest
            s2 = min(s1 + sub, count)
            for i in range(s1, s2):
                if pattern is not None and i % pattern.m == 0:  # an N:M group: its columns are up to date here
                    g = slice(i, i + pattern.m)
                    scores = Wt[g].square() / d1[g].square()[:, None]
                    if cur is not None:
                        scores.masked_fill_(cur[g], -math.inf)
                    drop = torch.argsort(scores, dim=0, stable=True)[: pattern.m - pattern.n]
                    maskt[g] = maskt[g].scatter(0, drop, True) | (False if cur is None else cur[g])
                w = Wt[i]
                q = w.masked_fill(maskt[i], 0.0)
                Qt[i] = q
                err = (w - q) / U1[i, i]
                Wt[i:s2].addr_(U1[i, i:s2], err, alpha=-1.0)
                Et[i] = err
            if s2 < count:
                Wt[s2:].addmm_(U1[s1:s2, s2:].t(), Et[s1:s2], alpha=-1.0)
        W[:, i1:i2] = Qt.t()
        if i2 < cols:
            W[:, i2:].addmm_(Et.t(), U[i1:i2, i2:], alpha=-1.0)
        mask[:, i1:i2] = maskt.t()
    W.masked_fill_(mask, 0.0)
    return mask


@register_method(
    "sparsegpt",
    needs="hessian",
    updates=True,
    reference="Frantar & Alistarh 2023, SparseGPT: massive language models can be accurately pruned in one-shot",
)
def sparsegpt(weight: Tensor, stats: LayerStats, sparsity: float, pattern, current, options: dict[str, Any]) -> Tensor:
    """OBS updates from the calibration Hessian, blocked lazy column updates; kept weights change."""
    H, stats.hessian = stats.hessian, None  # consumed: freed as soon as the layer is done
    return sparsegpt_(
        weight,
        H,
        sparsity,
        pattern,
        current,
        damp=options.get("damp", 0.01),
        blocksize=options.get("blocksize", 128),
    )
