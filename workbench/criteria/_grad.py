"""Gradient statistics for data-driven criteria, computed without writing to the model.

Every statistic is computed once per selection (kept in `ScoreContext.cache`) for every floating parameter of the
model, keyed by the parameter's identity, so tied weights and every coupled group read the same numbers. The
model's structural clone (its own module objects, every tensor shared) runs through `torch.func.functional_call` on
*detached leaves* that share the live storage: autograd never writes a `.grad`, the live parameters are not part of
any graph, and the live modules never hold the leaves, not even during a call. The clone's submodules are in eval
mode (BatchNorm uses its running statistics and does not update them; dropout is off); the live flags stay as they
are.

The loss is the adapter's (`Adapter.loss`, its task's `Task.loss_sum` in `workbench.adapter.tasks`): cross-entropy
for classification and the token tasks, and for regression the squared error averaged over a sample's outputs (the
mean, not the sum), summed over samples. Statistics divide by the count the loss gives (samples, or counted tokens
for the token tasks), so they do not depend on the batch size.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from ..adapter import Adapter, size, take
from ..errors import CriterionError
from ..evaluate import eval_mode
from ._registry import ScoreContext

__all__ = ["forward", "gradient_stat", "leaves", "need_data", "one_thread_if_small"]

KINDS = ("mean", "first", "fisher", "hg")


def need_data(ctx: ScoreContext, name: str) -> None:
    """Raise a CriterionError naming the criterion and the fix when `ctx` has no model or data."""
    if ctx.model is None or ctx.data is None:
        raise CriterionError(
            f"criterion {name!r} needs calibration data to score {ctx.target!r}: create the Workbench with data "
            "(Workbench(model, data) or calib=...)"
        )


def leaves(model: nn.Module) -> dict[str, Tensor]:
    """Detached leaves sharing the storage of every floating parameter (tied ones once), requiring grad."""
    return {n: p.detach().requires_grad_(True) for n, p in model.named_parameters() if p.is_floating_point()}


def forward(model: nn.Module, params: dict[str, Tensor], x: Any) -> Any:
    """`model(x)` with `params` in place of its parameters (and buffers): the model's own output."""
    if isinstance(x, dict):
        return torch.func.functional_call(model, params, (), x)
    return torch.func.functional_call(model, params, tuple(x) if isinstance(x, (list, tuple)) else (x,))


@contextlib.contextmanager
def _grad_mode(model: nn.Module):
    with eval_mode(model), torch.inference_mode(False), torch.enable_grad():
        yield


def _math_attention():
    """Double backward (Hessian-vector products) needs the math kernel of scaled_dot_product_attention."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        return sdpa_kernel(SDPBackend.MATH)
    except ImportError:  # pragma: no cover - older torch
        return contextlib.nullcontext()


def _mean_grad(ad: Adapter, model: nn.Module, data: Iterable, first_only: bool) -> tuple[dict[str, Tensor], int]:
    lv = leaves(model)
    acc = {k: torch.zeros_like(v, dtype=torch.float64) for k, v in lv.items()}
    n = 0
    with _grad_mode(model):
        for x, y in ad.batches(data, model):
            loss, count = ad.loss(forward(model, lv, x), x, y)
            gs = torch.autograd.grad(loss, list(lv.values()), allow_unused=True)
            for k, g in zip(lv, gs):
                if g is not None:
                    acc[k] += g.double()
            n += count
            if first_only:
                break
    if n == 0:
        raise CriterionError("the calibration data yielded no samples; pass a non-empty DataLoader of (inputs, labels)")
    return {k: v / n for k, v in acc.items()}, n


def _hg(ad: Adapter, model: nn.Module, data: Iterable) -> dict[str, Tensor]:
    """H g: the Hessian of the mean loss times its gradient (one double-backward pass per batch)."""
    g, n = _mean_grad(ad, model, data, first_only=False)
    lv = leaves(model)
    names = list(lv)
    acc = {k: torch.zeros_like(v, dtype=torch.float64) for k, v in lv.items()}
    with _grad_mode(model), _math_attention():
        for x, y in ad.batches(data, model):
            loss = ad.loss(forward(model, lv, x), x, y)[0] / n
            gs = torch.autograd.grad(loss, [lv[k] for k in names], create_graph=True, allow_unused=True)
            z = sum(((gi * g[k].to(gi.dtype)).sum() for k, gi in zip(names, gs) if gi is not None), torch.zeros(()))
            if not z.requires_grad:
                continue
            hs = torch.autograd.grad(z, [lv[k] for k in names], allow_unused=True)
            for k, h in zip(names, hs):
                if h is not None:
                    acc[k] += h.double()
    return acc


@contextlib.contextmanager
def one_thread_if_small(model: nn.Module, limit: int = 1_000_000):
    """One intra-op thread while running many one-sample passes of a model with fewer than `limit` parameters:
    for such tiny ops extra threads only add synchronisation (10-100x slower on a busy machine). Restored after."""
    threads = torch.get_num_threads()
    small = sum(p.numel() for p in model.parameters()) < limit
    try:
        if small:
            torch.set_num_threads(1)
        yield
    finally:
        torch.set_num_threads(threads)


def _fisher(ad: Adapter, model: nn.Module, data: Iterable) -> dict[str, Tensor]:
    """Diagonal empirical Fisher: the mean over samples of squared per-sample gradients."""
    lv = leaves(model)
    acc = {k: torch.zeros_like(v, dtype=torch.float64) for k, v in lv.items()}
    with one_thread_if_small(model):
        n = _fisher_loop(ad, model, lv, data, acc)
    if n == 0:
        raise CriterionError("the calibration data yielded no samples; pass a non-empty DataLoader of (inputs, labels)")
    return {k: v / n for k, v in acc.items()}


def _fisher_loop(ad: Adapter, model: nn.Module, lv: dict[str, Tensor], data: Iterable, acc: dict[str, Tensor]) -> int:
    n = 0
    with _grad_mode(model):
        for x, y in ad.batches(data, model):
            # one sample at a time: torch.func.vmap is far slower on grouped/depthwise convs and cannot batch
            # every layer, and a plain loop is exact and predictable
            for s in range(size(x)):
                xs, ys = take(x, 1, s), None if y is None else y[s : s + 1]
                loss, count = ad.loss(forward(model, lv, xs), xs, ys)
                gs = torch.autograd.grad(loss, list(lv.values()), allow_unused=True)
                for k, g in zip(lv, gs):
                    if g is not None:
                        acc[k] += g.double().square()
                n += count
    return n


def gradient_stat(ctx: ScoreContext, kind: str, name: str) -> Tensor:
    """The statistic `kind` for `ctx.param` (float64, its shape), computed once per selection for all parameters.

    `kind`: ``"mean"`` (mean gradient over the calibration data), ``"first"`` (mean gradient on its first batch),
    ``"fisher"`` (mean squared per-sample gradient), ``"hg"`` (Hessian of the mean loss times its gradient).
    """
    need_data(ctx, name)
    model = ctx.model
    key = f"grad:{kind}:{id(ctx.data)}"
    stats = ctx.cache.get(key)
    if stats is None:
        from ..analysis._graph import clone_with

        # functional_call swaps the tensors of the module it runs for the call: a structural clone sharing every
        # tensor runs instead, so the live model never holds the detached leaves (a reader in another thread)
        runner = clone_with(model, {})
        if kind in ("mean", "first"):
            by_name = _mean_grad(ctx.adapter, runner, ctx.data, first_only=kind == "first")[0]
        elif kind == "fisher":
            by_name = _fisher(ctx.adapter, runner, ctx.data)
        elif kind == "hg":
            by_name = _hg(ctx.adapter, runner, ctx.data)
        else:  # pragma: no cover - internal misuse
            raise ValueError(f"unknown gradient statistic {kind!r}; one of {KINDS}")
        stats = ctx.cache[key] = {id(model.get_parameter(k)): v for k, v in by_name.items()}
    try:
        return stats[id(model.get_parameter(ctx.param))]
    except KeyError:
        raise CriterionError(
            f"criterion {name!r} cannot score {ctx.param!r}: it is not a floating-point parameter"
        ) from None
