"""The sensitivity estimate: predicted loss changes from one gradient pass, and how far to trust them.

Every point's predicted change is a sum over the weights the point removes of ``-g·w`` (first-order Taylor; ``g``
the loss gradient over the data) plus, with ``second_order=True``, ``½·F·w²`` (``F`` the diagonal empirical Fisher
from per-sample gradients). Each weight's term is computed once; a row of single weights then sums them over the
``k`` lowest-scoring weights of each ratio in one pass (`PrefixRanking.prefix_sums`, the bucket holding the k-th
score taken pro rata) rather than building and reading a mask per ratio, which kept VGG-11's 100M-weight classifier
busy for minutes.

The trust figure compares the estimate with exact loss changes on a few cells spread over rows and ratios: their
Spearman rank correlation, clipped at 0, and 0 outright when the estimate's mean absolute value is under
`NUMERICAL_ZERO` of the exact one's (its ranks are then rounding noise: a model at a minimum of its loss has zero
gradients, so a first-order estimate predicts ~0 everywhere however much pruning hurts); changes, measured or
predicted, smaller than two steps of the model's float type at the loss's magnitude count as 0 (`resolution`: the
measurement cannot order them; on random-weight models many cells change the float32 loss by exactly 0.0). 1 means
the estimate orders the cells as the exact scan does, which is what choosing per-layer ratios from the map relies
on. Its scale
is reported apart (`scale_ratio`: mean |estimated| / mean |exact| on the same cells): first-order and Fisher
estimates of trained models rank well but often predict changes tens of times too small.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from ..adapter import logits_of, size, take
from ..errors import DataError
from ..evaluate import eval_mode
from ..masks.granularity import n_to_prune
from ._graph import clone_with
from ._ranking import PrefixRanking

__all__ = ["estimate_values", "pick_cells", "resolution", "scale_ratio", "trust_figure"]

NUMERICAL_ZERO = 1e-3  # estimates this many times smaller than the measured changes are numerically zero


def _grads(adapter, model, names, params, x, y) -> list[Tensor]:
    """Loss gradients of `params` (named `names`) in their dtype, also for frozen ones (``requires_grad=False``): the
    model runs on detached leaves through `torch.func.functional_call`, so no flag and no ``.grad`` is touched."""
    from torch.func import functional_call

    leaves = {n: p.detach().requires_grad_(True) for n, p in zip(names, params)}
    args, kwargs = (x, {}) if isinstance(x, (list, tuple)) else (((), x) if isinstance(x, dict) else ((x,), {}))
    loss, count = adapter.loss(functional_call(model, leaves, tuple(args), kwargs), x, y)
    if not loss.requires_grad:  # nothing the loss depends on is among `params`
        return [torch.zeros_like(p) for p in params], count
    gs = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, gs)], count


def _squared_sample_grads(adapter, model, names, params, x, y, tick=None) -> list[Tensor]:
    """Per parameter, the sum over the batch's samples of each sample's squared loss gradient. Vectorised
    (torch.func.vmap over per-sample grads) over chunks of at most ~64 MB of gradients, each squared and summed
    before the next (the per-sample gradients of a whole batch are never held at once); models vmap cannot
    batch (recurrent kernels, random ops) take one backward pass per sample instead, with the same result.
    `tick()` is called between chunks (a Stop button's check)."""
    if isinstance(x, Tensor) and x.dim() > 0 and y is not None and y.dim() > 0 and adapter.task is not None:
        task = adapter.task
        try:
            from torch.func import functional_call, grad, vmap

            def loss_one(pd: dict[str, Tensor], xs: Tensor, ys: Tensor) -> Tensor:
                out = logits_of(functional_call(model, pd, (xs.unsqueeze(0),)))
                return task.loss_sum(out, ys.unsqueeze(0), check=False)[0]

            pd = {n: p.detach() for n, p in zip(names, params)}
            chunk = max(1, min(int(y.shape[0]), (1 << 24) // max(1, sum(p.numel() for p in params))))
            per_sample = vmap(grad(loss_one), in_dims=(None, 0, 0))
            acc = [torch.zeros_like(p, dtype=torch.float64) for p in params]
            for start in range(0, int(y.shape[0]), chunk):
                gs = per_sample(pd, x[start : start + chunk], y[start : start + chunk])
                for a, n in zip(acc, names):
                    a += gs[n].square().sum(0, dtype=torch.float64)
                del gs
                if tick is not None:
                    tick()
            return acc
        except (KeyboardInterrupt, MemoryError):
            raise
        except Exception:  # no batching rule for some op: the per-sample loop below
            pass
    out = [torch.zeros_like(p, dtype=torch.float64) for p in params]
    for s in range(size(x)):
        xs, ys = take(x, 1, s), None if y is None else y[s : s + 1]
        for acc, g in zip(out, _grads(adapter, model, names, params, xs, ys)[0]):
            acc += g.double().square()
        if tick is not None and s % 16 == 15:
            tick()
    return out


def _row_params(row, ratios: np.ndarray) -> list[str]:
    if isinstance(row.ranking, PrefixRanking):
        return list(row.ranking.params)
    return list(row.ranking.masks(float(ratios.max())))


def estimate_values(
    bench, rows, ratios: np.ndarray, data, second_order: bool, bar, tick: Callable[[], None] | None
) -> np.ndarray:
    """Predicted loss change per (row, ratio) from gradients (and squared per-sample gradients) of one pass over
    `data`. `bar(1)` after each batch, `tick()` between Fisher chunks (either may raise to stop)."""
    model, adapter = bench.model, bench.adapter
    names = sorted({n for r in rows for n in _row_params(r, ratios)})
    params = [model.get_parameter(n) for n in names]
    # functional_call swaps a module's tensors for the call: on a structural clone (sharing every tensor), so the
    # live model never holds the detached leaves, not even for the duration of a call
    runner = clone_with(model, {}).eval()
    grads: list[Tensor] | None = None  # summed in the parameters' dtype: no float64 copy of a 100M-weight model
    fisher = [torch.zeros_like(p, dtype=torch.float64) for p in params] if second_order else None
    n = 0
    with eval_mode(model), torch.enable_grad():
        for x, y in adapter.batches(data, model):
            gs, count = _grads(adapter, runner, names, params, x, y)  # autograd.grad: no .grad written on the model
            if grads is None:
                grads = gs
            else:
                for acc, g in zip(grads, gs):
                    acc += g
            del gs
            if fisher is not None:  # diagonal empirical Fisher from per-sample gradients
                for acc, g2 in zip(fisher, _squared_sample_grads(adapter, runner, names, params, x, y, tick)):
                    acc += g2
            n += count  # loss terms: samples, or tokens for language models
            bar(1)
    if n == 0 or grads is None:
        raise DataError("sensitivity estimate: the data yielded no samples")
    index = {name: i for i, name in enumerate(names)}

    def term(name: str) -> Tensor:
        """Each weight's predicted loss change when it alone goes: -g·w (+ ½·F·w²); 0 where already pruned.
        In the weights' dtype (float32 terms, summed in float64 by the caller)."""
        k = index[name]
        w = params[k].detach()
        c = grads[k].mul(-1.0 / n).mul_(w)
        if fisher is not None:
            c.add_(fisher[k].mul(0.5 / n).mul_(w).mul_(w).to(c.dtype))
        cur = bench.store.current(name)
        if cur is not None:
            c.masked_fill_(cur.to(c.device), 0.0)
        return c

    values = np.zeros((len(rows), len(ratios)))
    with torch.no_grad():
        for i, row in enumerate(rows):
            if isinstance(row.ranking, PrefixRanking):  # one pass per row, not one mask per ratio
                parts = [term(p).reshape(-1) for p in row.ranking.params]
                c = parts[0] if len(parts) == 1 else torch.cat(parts)
                ks = [n_to_prune(float(r), row.ranking.n) for r in ratios]
                values[i] = row.ranking.prefix_sums(c, ks, exact=False)
                del c
                continue
            terms: dict[str, Tensor] = {}
            for j, r in enumerate(ratios):
                total = 0.0
                for name, mask in row.ranking.masks(float(r)).items():
                    if name not in terms:
                        terms[name] = term(name)
                    total += float(terms[name][mask.to(terms[name].device)].sum(dtype=torch.float64))
                values[i, j] = total
    return values


def pick_cells(n_rows: int, n_cols: int, k: int) -> list[tuple[int, int]]:
    """`k` cells spread over rows (evenly) and ratios (a golden-ratio sequence, so neighbouring rows get distant
    ratios); every cell when there are at most `k`."""
    if n_rows * n_cols <= k:
        return [(i, j) for i in range(n_rows) for j in range(n_cols)]
    cells: list[tuple[int, int]] = []
    used = [0] * n_rows
    for t in range(k):
        i = round(t * (n_rows - 1) / max(1, k - 1))
        while used[i] == n_cols:  # every ratio of this row taken (fewer rows than cells): the next row with room
            i = (i + 1) % n_rows
        j = int(((t + 0.5) * 0.6180339887498949) % 1.0 * n_cols)
        while (i, j) in cells:  # a row picked twice: the next free ratio
            j = (j + 1) % n_cols
        cells.append((i, j))
        used[i] += 1
    return cells


def _ranks(a: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1 with ties given their mean rank (as Spearman's rho needs)."""
    order = np.argsort(a, kind="stable")
    r = np.empty(len(a))
    r[order] = np.arange(len(a), dtype=float)
    for v in np.unique(a):
        same = a == v
        if same.sum() > 1:
            r[same] = r[same].mean()
    return r


def scale_ratio(estimated: Sequence[float], exact: Sequence[float]) -> float:
    """Mean absolute estimated change over mean absolute exact change (1: the right scale; nan: no exact change).

    >>> scale_ratio([0.01, 0.02], [0.5, 1.0])
    0.02
    """
    e, x = np.abs(np.asarray(estimated, dtype=float)), np.abs(np.asarray(exact, dtype=float))
    b = float(x.mean()) if x.size else 0.0
    return float(e.mean()) / b if b > 0 else math.nan


def resolution(model: torch.nn.Module, baseline: float) -> float:
    """The smallest metric change an exact measurement resolves: two steps of the model's floating dtype at the
    baseline's magnitude (a loss of 1.1 in float32: 2.4e-7; in bfloat16: 0.016). Changes below it, measured or
    predicted, are zero as far as a comparison of the two can tell.

    >>> f32, bf16 = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2).to(torch.bfloat16)
    >>> f"{resolution(f32, 1.1):.2g}", f"{resolution(bf16, 1.1):.2g}", resolution(f32, 0.0)
    ('2.4e-07', '0.016', 0.0)
    """
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    b = abs(float(baseline))
    if not math.isfinite(b) or b == 0.0:
        return 0.0
    return 2.0 * torch.finfo(dtype).eps * 2.0 ** math.floor(math.log2(b))


def trust_figure(estimated: Sequence[float], exact: Sequence[float], resolution: float = 0.0) -> float:
    """Spearman rank correlation of the two, clipped to [0, 1]; 0 if the estimate is numerically zero next to the
    exact changes (see the module docstring). Values within `resolution` of 0 (see `resolution`) count as 0 on both
    sides: the measurement cannot order them, so an estimate that orders them is neither right nor wrong there.

    >>> round(trust_figure([0.1, 0.2, 0.4], [0.12, 0.3, 0.5]), 2), trust_figure([1e-9, 2e-9, 0], [0.1, 0.3, 0.2])
    (1.0, 0.0)
    >>> est, exact = [3e-9, -2e-9, 5e-8, 1e-3, 2e-3], [0.0, 0.0, 0.0, 1.1e-3, 1.9e-3]
    >>> round(trust_figure(est, exact), 2), round(trust_figure(est, exact, resolution=2.4e-7), 2)
    (0.89, 1.0)
    """
    e, x = np.asarray(estimated, dtype=float), np.asarray(exact, dtype=float)
    if e.size == 0 or not (np.isfinite(e).all() and np.isfinite(x).all()):
        return 0.0
    scale = scale_ratio(e, x)
    if not math.isnan(scale) and scale < NUMERICAL_ZERO:
        return 0.0
    if resolution > 0:
        e, x = np.where(np.abs(e) <= resolution, 0.0, e), np.where(np.abs(x) <= resolution, 0.0, x)
    re, rx = _ranks(e), _ranks(x)
    if re.std() == 0 or rx.std() == 0:  # a constant side: agreement only if both are
        return 1.0 if re.std() == rx.std() == 0 else 0.0
    return float(min(1.0, max(0.0, float(np.corrcoef(re, rx)[0, 1]))))
