"""Learned masks: movement pruning with straight-through top-k scores (Sanh, Wolf & Rush 2020).

Every prunable weight ``W`` gets a score ``S`` of the same shape, trained with the weights. The forward pass uses
``W * M`` where ``M = TopK(S)`` keeps the highest scores (over all weights with ``scope="global"``, per layer with
``scope="layer"``); the top-k has no gradient, so the straight-through estimator passes ``dL/dM`` to ``S`` as it is:
``dL/dS = dL/dW' * W``. A weight whose gradient keeps pushing it away from zero ("moving out") gains score; one
pulled towards zero loses it, so the mask learns which weights the *task* wants, not which are large. Sparsity
follows the cubic AGP schedule from what is already pruned to `ratio` over the first `ramp` share of the steps,
then holds; the last mask is applied (one ordinary history step) and `finetune_epochs` epochs of masked
fine-tuning follow.

The live model stays a plain ``nn.Module`` throughout: the masked weights enter through
``torch.func.functional_call`` (no hooks, no parametrization); the scores live only inside the procedure. Scores
start at ``|W|``, so before training the mask is the magnitude mask and training moves it; each tensor's scores
learn at `score_lr` times its mean ``|W|`` (Adam steps are about the lr whatever the gradient, so an absolute lr
would churn small-weight layers and freeze large-weight ones).
The result's ``info["plan"]`` is an ordinary `Plan` with the per-layer sparsity the scores learned (plain data);
``info["changed_vs_magnitude"]`` says what share of the kept weights differ from a magnitude mask of the same
per-layer sparsity on the final weights.

>>> import torch, workbench as wb
>>> torch.manual_seed(0) and None
>>> model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))
>>> data = [(torch.randn(16, 8), torch.randint(0, 3, (16,))) for _ in range(4)]
>>> bench = wb.Workbench(model, data, train=data)
>>> r = wb.training.learned_masks(bench, ratio=0.75, epochs=3, finetune_epochs=0, progress=False)
>>> round(bench.report(evaluate=False).sparsity, 2), r.kind, sorted(r.info["plan"].to_dict()["layers"])
(0.75, 'learned', ['0', '2'])
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from .._deprecate import renamed
from ..errors import ModelError
from ..masks.select import n_to_prune
from ..plan import LayerPlan, Plan
from ..state import as_state
from ._loop import (
    Curves,
    Progress,
    TrainingError,
    TrainingResult,
    check,
    pool,
    train_epochs,
)
from ._procedure import run_procedure, sparsity_of
from ._state import MaskView
from .finetune import training_data
from .schedules import _train_kwargs, agp_sparsity

__all__ = ["learned_masks"]

SCOPES = ("global", "layer")


def _layer_of(state) -> dict[str, str]:
    """Full parameter name -> the name of the layer (target) it belongs to, for the default pool."""
    names = set(pool(state))
    return {p: t.name for t in state.targets for p in t.param_names() if p in names}


def _masks_at(scores: dict[str, Tensor], fixed: dict[str, Tensor], sparsity: float, scope: str) -> dict[str, Tensor]:
    """Boolean masks (True = pruned) removing the `sparsity` share with the lowest scores (globally or per tensor);
    `fixed` elements (pruned before) always go and count towards the share."""
    out: dict[str, Tensor] = {}
    groups = [list(scores)] if scope == "global" else [[n] for n in scores]
    for names in groups:
        parts = []
        for n in names:  # every tensor keeps its best-scoring live weight: no layer collapses (disconnects the net)
            s = scores[n].detach().reshape(-1).float().masked_fill(fixed[n].reshape(-1), -math.inf)
            best = int(torch.argmax(s))
            if s[best] > -math.inf:
                s = s.clone()
                s[best] = math.inf
            parts.append(s)
        flat = torch.cat(parts)
        pinned = torch.cat([fixed[n].reshape(-1) for n in names])
        k = max(n_to_prune(sparsity, flat.numel()), int(pinned.sum()))
        drop = torch.zeros_like(pinned)
        if k:
            drop[torch.topk(flat, k, largest=False, sorted=False).indices] = True
        i = 0
        for n in names:
            m = scores[n].numel()
            out[n] = drop[i : i + m].view_as(scores[n])
            i += m
    return out


@renamed(target="ratio")
def learned_masks(
    state,
    ratio: float = 0.8,
    epochs: int = 5,
    *,
    scope: str = "global",
    ramp: float = 2 / 3,
    score_lr: float = 1e-2,
    finetune_epochs: int = 1,
    data: Iterable | None = None,
    seed: int | None = None,
    progress: Any = True,
    **train: Any,
) -> TrainingResult:
    """Train weights and movement scores for `epochs` epochs towards `ratio` sparsity of the prunable weights
    (linear, conv, LSTM, attention), then apply the learned mask and fine-tune `finetune_epochs` epochs.

    `scope`: ``"global"`` (the scores decide how much each layer loses) or ``"layer"`` (every layer at `ratio`).
    `ramp`: the share of the steps over which sparsity rises (cubic), the rest trains at `ratio`. `score_lr`: the
    scores' learning rate (Adam; they need a larger one than the weights). `train`: ``lr``, ``optimizer``,
    ``weight_decay``, ``schedule`` for the weights (see `finetune`). Weights pruned before stay pruned and count
    towards `ratio`. One history step (``kind="learned"``); stopping records the mask reached at that point.
    """
    state = as_state(state)
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio < 1:
        raise TrainingError(
            f"ratio must be a sparsity strictly between 0 and 1 (the share of prunable weights to remove), "
            f"got {ratio!r}"
        )
    if scope not in SCOPES:
        raise TrainingError(f"scope must be one of {SCOPES}, got {scope!r}")
    epochs = check(epochs, "epochs", lo=1, lo_open=False, integer=True)
    finetune_epochs = check(finetune_epochs, "finetune_epochs", lo=0, lo_open=False, integer=True)
    ramp = check(ramp, "ramp", lo=0, hi=1)
    score_lr = check(score_lr, "score_lr")
    kw = _train_kwargs(dict(train))
    data = training_data(state, data)
    layer_of = _layer_of(state)
    if not layer_of:
        raise ModelError(
            "the model has no prunable weights (linear, conv, LSTM, attention) for learned masks; see bench.targets"
        )
    names = list(layer_of)
    steps_per_epoch = len(data) if hasattr(data, "__len__") else None

    def body(view: MaskView, curves: Curves, bar: Progress, info: dict[str, Any]) -> None:
        from torch.func import functional_call

        model = state.model
        W = {n: model.get_parameter(n) for n in names}
        fixed = {}
        for n in names:
            cur = view.current(n)
            fixed[n] = torch.zeros_like(W[n], dtype=torch.bool) if cur is None else cur.to(W[n].device)
        with torch.no_grad():  # start at magnitude, so the first mask is the (global) magnitude mask
            scores = {n: W[n].detach().abs().float() for n in names}
        for s in scores.values():
            s.requires_grad_(True)
        start = sum(int(f.sum()) for f in fixed.values()) / sum(w.numel() for w in W.values())
        total = epochs * steps_per_epoch if steps_per_epoch else None
        n_ramp = max(1, round(ramp * total)) if total else 1
        sched = {"step": 0, "sparsity": start}

        def sparsity_now() -> float:
            if total is None:
                return ratio
            return agp_sparsity(sched["step"], initial=start, final=ratio, start=0, n=n_ramp, dt=1)

        # Adam moves every score by about its lr per step, so each tensor's lr is relative to its own weights' scale
        sopt = torch.optim.Adam(
            [{"params": [s], "lr": score_lr * float(s.detach().mean().clamp_min(1e-12))} for s in scores.values()]
        )
        info["sparsity_schedule"] = []

        def finish() -> None:
            """Apply the mask at the sparsity reached; record the learned allocation as a plan."""
            masks = _masks_at(scores, fixed, sched["sparsity"], scope)
            per_layer: dict[str, list[int]] = {}
            for n, m in masks.items():
                c = per_layer.setdefault(layer_of[n], [0, 0])
                c[0] += int(m.sum())
                c[1] += m.numel()
            plan = Plan({k: LayerPlan(a / b, "weight", "magnitude") for k, (a, b) in per_layer.items()})
            info["plan"] = plan
            kept_diff, kept = 0, 0  # (before view.add_ zeroes the pruned weights)
            for n, m in masks.items():  # magnitude mask with the same per-tensor count, on the final weights
                k = int(m.sum())
                flat = W[n].detach().abs().reshape(-1).float().masked_fill(fixed[n].reshape(-1), -math.inf)
                mm = torch.zeros_like(flat, dtype=torch.bool)
                if k:
                    mm[torch.topk(flat, k, largest=False, sorted=False).indices] = True
                kept += int((~m).sum())
                kept_diff += int((~m & mm.view_as(m)).sum())
            info["changed_vs_magnitude"] = kept_diff / max(kept, 1)
            view.add_(masks)
            info["sparsity_reached"] = sched["sparsity"]

        def forward(x):
            """The model with the hard mask of the current sparsity; straight-through: the backward sends dL/dM to
            the scores."""
            sched["sparsity"] = sparsity_now()
            keep = {n: ~m for n, m in _masks_at(scores, fixed, sched["sparsity"], scope).items()}
            gated = {n: W[n] * (keep[n].to(W[n].dtype) + scores[n] - scores[n].detach()).to(W[n].dtype) for n in names}
            return functional_call(model, gated, tuple(x) if isinstance(x, (list, tuple)) else (x,), strict=False)

        def on_step(step: int) -> None:
            sopt.step()
            sopt.zero_grad(set_to_none=True)
            sched["step"] = step

        sp = sparsity_of(state, view)
        try:
            train_epochs(
                state,
                view,
                data,
                epochs,
                curves=curves,
                progress=bar,
                sparsity_of=lambda: sched["sparsity"],
                forward=forward,
                on_step=on_step,
                on_epoch=lambda epoch: info["sparsity_schedule"].append(sched["sparsity"]),
                # the epoch's metric is of the masked model: the mask is applied for the evaluation only
                evaluate_in=lambda: _masked(model, W, scores, fixed, sched["sparsity"], scope),
                **kw,
            )
        except KeyboardInterrupt:
            finish()
            raise
        finish()
        info["pruned_metric"] = float(state.evaluate()["metric"]) if state.data is not None else math.nan
        if finetune_epochs:
            train_epochs(state, view, data, finetune_epochs, curves=curves, progress=bar, sparsity_of=sp, **kw)

    label = f"learned masks (movement, {scope}) to {ratio:.0%}, {epochs} ep + fine-tune {finetune_epochs} ep"
    info = {
        "method": "movement",
        "target": ratio,
        "scope": scope,
        "epochs": epochs,
        "finetune_epochs": finetune_epochs,
    }
    info.update({k: v for k, v in kw.items() if isinstance(v, (int, float, str))})
    total_steps = steps_per_epoch * (epochs + finetune_epochs) if steps_per_epoch else 0
    result = run_procedure(
        state, "learned", label, body, data=data, seed=seed, progress=progress, total_steps=total_steps, info=info
    )
    return result


class _masked:
    """Zero the masked weights for a moment (an evaluation during training) and put them back exactly."""

    def __init__(self, model, W, scores, fixed, sparsity, scope):
        self.W, self.masks = W, _masks_at(scores, fixed, sparsity, scope)
        self.saved: dict[str, Tensor] = {}

    def __enter__(self):
        with torch.no_grad():
            for n, m in self.masks.items():
                self.saved[n] = self.W[n].detach()[m].clone()
                self.W[n].detach().masked_fill_(m, 0)

    def __exit__(self, *exc):
        with torch.no_grad():
            for n, m in self.masks.items():
                self.W[n].detach().masked_scatter_(m, self.saved[n])
        return False
