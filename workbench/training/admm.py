"""ADMM pruning (Zhang et al. 2018): train towards a sparsity constraint, then hard-prune and fine-tune.

Minimise ``f(W)`` subject to ``W in S`` (at most the plan's share of non-zeros per layer, or over all layers for a
global plan) by splitting ``W = Z``. Every epoch of the W-step trains ``f(W) + rho/2 ||W - Z + U||^2``; after it
the Z-step projects ``W + U`` onto S (keeps the largest magnitudes: the Euclidean projection) and the dual update
adds ``U += W - Z``. Then W is hard-pruned onto S (its own largest magnitudes) and fine-tuned with the masks
enforced. The W-step trains at a constant learning rate (`lr`); the fine-tune uses `schedule` (cosine by default).
One history step; ``info["residual"]`` is ``||W - Z|| / ||W||`` after each epoch (it shrinks as W approaches S;
a larger `rho` pulls harder).

>>> import torch, workbench as wb
>>> torch.manual_seed(0) and None
>>> model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))
>>> data = [(torch.randn(16, 8), torch.randint(0, 3, (16,))) for _ in range(4)]
>>> bench = wb.Workbench(model, data, train=data)
>>> r = wb.training.admm(bench, wb.Plan.uniform(0.75), epochs=3, rho=1e-2, finetune_epochs=1, progress=False)
>>> round(float((model[0].weight == 0).float().mean()), 2), r.kind
(0.75, 'admm')
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from .._deprecate import renamed
from ..masks.granularity import get_granularity
from ..masks.select import n_to_prune
from ..masks.topk import lowest_k
from ..plan import Plan
from ..state import as_state
from ._loop import Curves, Progress, TrainingError, TrainingResult, check, train_epochs
from ._procedure import final_plan, plan_at, run_procedure, sparsity_of
from ._state import MaskView
from .finetune import training_data
from .schedules import _train_kwargs

__all__ = ["admm"]


def _groups(state, plan: Plan) -> list[tuple[list[str], float]]:
    """(parameter names, ratio) per constraint: one group for a global plan, one per layer otherwise."""
    from ..masks.select import select

    for lp in [*plan.layers.values(), *([plan.default] if plan.default else [])]:
        g = get_granularity(lp.granularity)
        if g.structured or g.patterned or lp.criterion not in ("magnitude", "l1", "l2"):
            raise TrainingError(
                f"ADMM projects onto unstructured sparsity by magnitude; the plan asks for {lp.granularity}/"
                f"{lp.criterion}. Use granularity='weight' and criterion='magnitude'"
            )
    sel = select(state.model, state.targets, state.groups, plan_at(plan, lambda r: 0.0), state.store, seed=state.seed)
    names = list(sel.layers)
    if plan.scope == "global":
        params = [p for n in names for p in state.targets[n].param_names()]
        return [(params, plan.default.ratio)]  # type: ignore[union-attr]
    return [(state.targets[n].param_names(), (plan.layers.get(n) or plan.default).ratio) for n in names]  # type: ignore[union-attr]


def _project(state, groups, values: dict[str, Tensor]) -> dict[str, Tensor]:
    """Masks (True = zero) of the Euclidean projection of `values` onto the constraint set: per group, the
    smallest magnitudes go; weights the store has pruned always go."""
    out: dict[str, Tensor] = {}
    for names, ratio in groups:
        fns = []
        for n in names:
            s = values[n].detach().abs().float()
            cur = state.store.current(n)
            if cur is not None:
                s = s.masked_fill(cur.to(s.device), -math.inf)
            fns.append(lambda s=s: s)
        total = sum(values[n].numel() for n in names)
        out.update(zip(names, lowest_k(fns, n_to_prune(ratio, total))))
    return out


@renamed(final="ratio")
def admm(
    state,
    plan: Plan | None = None,
    epochs: int = 5,
    rho: float = 1e-3,
    *,
    ratio: float = 0.9,
    finetune_epochs: int = 2,
    data: Iterable | None = None,
    seed: int | None = None,
    progress: Any = True,
    **train: Any,
) -> TrainingResult:
    """ADMM towards `plan`'s sparsity (default: global `ratio`), `epochs` epochs with penalty weight `rho`, then
    hard prune and `finetune_epochs` epochs of masked fine-tuning. `train`: ``lr``, ``optimizer``,
    ``weight_decay``, ``schedule`` (see `finetune`); the default here is SGD with momentum at lr 1e-2, because
    Adam moves each weight by about `lr` per step whatever the gradient, which caps how fast the penalty can pull
    W onto the constraint (measured: with AdamW the residual did not shrink on digits-cnn for rho up to 0.2)."""
    state = as_state(state)
    if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not math.isfinite(rho) or rho <= 0:
        raise TrainingError(
            f"rho must be a number > 0 (the weight of the ADMM penalty rho/2 ||W - Z + U||^2), got {rho!r}"
        )
    epochs = check(epochs, "epochs", lo=1, lo_open=False, integer=True)
    finetune_epochs = check(finetune_epochs, "finetune_epochs", lo=0, lo_open=False, integer=True)
    target = final_plan(plan, ratio, "magnitude")
    groups = _groups(state, target)
    kw = _train_kwargs({"optimizer": "sgd", "lr": 1e-2, **train})
    data = training_data(state, data)
    names = [n for g, _ in groups for n in g]

    def body(view: MaskView, curves: Curves, bar: Progress, info: dict[str, Any]) -> None:
        model = state.model
        W = {n: model.get_parameter(n) for n in names}
        with torch.no_grad():
            masks = _project(state, groups, W)
            Z = {n: W[n].detach().masked_fill(masks[n], 0) for n in names}
            U = {n: torch.zeros_like(W[n]) for n in names}

        def penalty() -> Tensor:
            return 0.5 * rho * sum(((W[n] - Z[n] + U[n]) ** 2).sum() for n in names)

        def dual_update(epoch: int) -> None:
            with torch.no_grad():
                V = {n: W[n].detach() + U[n] for n in names}
                m = _project(state, groups, V)
                for n in names:
                    Z[n] = V[n].masked_fill(m[n], 0)
                    U[n] += W[n].detach() - Z[n]
                num = math.sqrt(sum(float(((W[n] - Z[n]) ** 2).sum()) for n in names))
                den = math.sqrt(sum(float((W[n] ** 2).sum()) for n in names)) or 1.0
            info["residual"].append(num / den)

        info["residual"] = []
        sp = sparsity_of(state, view)
        w_step = {**kw, "schedule": "constant"}  # the W-step follows a moving Z - U: a decaying lr could not
        train_epochs(
            state,
            view,
            data,
            epochs,
            curves=curves,
            progress=bar,
            on_epoch=dual_update,
            extra_loss=penalty,
            sparsity_of=sp,
            **w_step,
        )
        with torch.no_grad():
            view.add_(_project(state, groups, W))
        info["pruned_metric"] = float(state.evaluate()["metric"]) if state.data is not None else math.nan
        if finetune_epochs:
            train_epochs(state, view, data, finetune_epochs, curves=curves, progress=bar, sparsity_of=sp, **kw)

    label = f"ADMM rho={rho:g} {epochs} ep, hard prune, fine-tune {finetune_epochs} ep"
    info = {"rho": rho, "epochs": epochs, "finetune_epochs": finetune_epochs, **kw}
    total = len(data) * (epochs + finetune_epochs) if hasattr(data, "__len__") else 0
    return run_procedure(
        state, "admm", label, body, data=data, seed=seed, progress=progress, total_steps=total, plan=target, info=info
    )
