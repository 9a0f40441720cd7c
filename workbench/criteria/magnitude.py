"""Weight-only criteria: magnitude (|w|), L1, L2 and the random baseline."""

from __future__ import annotations

import torch
from torch import Tensor

from ._registry import ScoreContext, register_criterion


@register_criterion("magnitude", reference="Han et al. 2015, Learning both weights and connections")
def magnitude(weight: Tensor, ctx: ScoreContext) -> Tensor:
    """|w|: smallest weights go first; units are ranked by the sum of |w| (their L1 norm).

    >>> magnitude(torch.tensor([-3.0, 1.0]), None)
    tensor([3., 1.])
    """
    return _abs(weight, ctx)


def _abs(weight: Tensor, ctx: ScoreContext | None) -> Tensor:
    out = None if ctx is None else ctx.out
    if out is not None and weight.dtype == torch.float32 and out.shape == weight.shape:
        return torch.abs(weight, out=out)
    return weight.abs().float()


@register_criterion("l1", reference="Li et al. 2017, Pruning filters for efficient ConvNets")
def l1(weight: Tensor, ctx: ScoreContext) -> Tensor:
    """L1 norm: |w| per weight, sum of |w| per filter/neuron (Li et al.'s filter criterion)."""
    return _abs(weight, ctx)


@register_criterion("l2", reference="He et al. 2018, Soft filter pruning")
def l2(weight: Tensor, ctx: ScoreContext) -> Tensor:
    """L2 norm: w² per weight, so units are ranked by their (squared) L2 norm."""
    return weight.float().square()


@register_criterion("random", reference="the baseline every criterion must beat")
def random(weight: Tensor, ctx: ScoreContext) -> Tensor:
    """Uniform random scores, seeded by the workbench seed and the parameter name."""
    return torch.rand(weight.shape, generator=ctx.generator(), dtype=torch.float32).to(weight.device)
