"""Gradient criteria: first-order Taylor, Optimal Brain Damage, SNIP and GraSP.

All four read the loss gradient on the calibration data (the Workbench's `calib`), computed once per selection
for every parameter (`workbench.criteria._grad`): the model runs in eval mode on detached leaves, so scoring never
writes a `.grad`, never updates BatchNorm statistics and leaves every module's train/eval flag as it was.
They score every kind of layer (linear, conv, LSTM, attention, norm, embedding).

SNIP and GraSP are meant for pruning at initialisation (before training), Taylor and OBD for trained models;
nothing stops using either at any time. Structured granularities rank a unit by the mean of its weights' scores.

>>> import torch, workbench as wb
>>> torch.manual_seed(0) and None
>>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
>>> data = [(torch.randn(16, 4), torch.randint(0, 3, (16,)))]
>>> bench = wb.Workbench(model, data)
>>> _ = bench.apply(wb.Plan.global_(0.5, criterion="snip"), evaluate=False)
>>> round(bench.report(evaluate=False).sparsity, 2)
0.5
"""

from __future__ import annotations

from torch import Tensor

from ._grad import gradient_stat
from ._registry import ScoreContext, register_criterion


def _out(score: Tensor, weight: Tensor) -> Tensor:
    return score.float().to(weight.device)


@register_criterion(
    "taylor",
    reference="Molchanov et al. 2017/2019, Pruning convolutional neural networks for resource efficient inference; "
    "Importance estimation for neural network pruning",
)
def taylor(weight: Tensor, ctx: ScoreContext) -> Tensor:
    """|w * dL/dw|: first-order estimate of the loss change when w is removed, gradient averaged over `calib`.

    A unit is ranked by the mean of its weights' |w g| (Molchanov et al. 2019 square the unit's summed w g
    instead; the per-weight form is what an element score can express).
    """
    return _out((weight.double() * gradient_stat(ctx, "mean", "taylor")).abs(), weight)


@register_criterion("obd", reference="LeCun et al. 1990, Optimal Brain Damage")
def obd(weight: Tensor, ctx: ScoreContext) -> Tensor:
    """0.5 * H_ii * w^2 with H_ii the diagonal empirical Fisher E[(dL/dw)^2] over `calib` (per-sample gradients)."""
    return _out(0.5 * gradient_stat(ctx, "fisher", "obd") * weight.double().square(), weight)


@register_criterion(
    "snip", reference="Lee et al. 2019, SNIP: Single-shot network pruning based on connection sensitivity"
)
def snip(weight: Tensor, ctx: ScoreContext) -> Tensor:
    """|w * dL/dw| on one batch (the first of `calib`), normalised by its sum over every parameter of the model."""
    key = f"snip:total:{id(ctx.data)}"
    g = gradient_stat(ctx, "first", "snip")
    total = ctx.cache.get(key)
    if total is None:
        stats = ctx.cache[f"grad:first:{id(ctx.data)}"]
        params = {id(p): p for p in ctx.model.parameters()}
        total = ctx.cache[key] = sum(float((params[i].detach().double() * s).abs().sum()) for i, s in stats.items())
    return _out((weight.double() * g).abs() / (total or 1.0), weight)


@register_criterion(
    "grasp",
    reference="Wang et al. 2020, Picking winning tickets before training by preserving gradient flow (GraSP)",
)
def grasp(weight: Tensor, ctx: ScoreContext) -> Tensor:
    """w * (H g), the negated GraSP score: lowest first = the paper's highest -w*(Hg) removed first.

    GraSP keeps the gradient norm after pruning large: removing w changes ``g^T g`` by about ``-2 w (H g)``, and the
    paper removes the weights with the *largest* ``S = -w * (H g)`` (their removal reduces gradient flow least or
    even increases it). H is the Hessian of the mean loss over `calib` (a Hessian-vector product per batch, with
    the gradient g averaged over the same data; the paper's temperature on the logits is not applied).
    """
    return _out(weight.double() * gradient_stat(ctx, "hg", "grasp"), weight)
