"""Data-driven unit criteria: activation entropy (Luo & Wu 2017) and APoZ (Hu et al. 2016).

Both score the output units of a layer from its activations on the calibration data (the Workbench's
`calib`), computed once per selection and shared by every layer. Every weight of a unit gets the unit's
score, so with `granularity="weight"` they prune whole rows first; they are meant for `neuron`/`filter`.
"""

from __future__ import annotations

from torch import Tensor

from ..errors import CriterionError
from ._registry import ScoreContext, register_criterion


def _unit_scores(weight: Tensor, ctx: ScoreContext, kind: str) -> Tensor:
    from ..activations import histogram_entropy, unit_stats

    if ctx.data is None or ctx.model is None:
        raise CriterionError(
            f"criterion {kind!r} needs calibration data to score {ctx.target!r}: create the Workbench with data"
        )
    key = f"unit_stats:{id(ctx.data)}"
    stats = ctx.cache.get(key)
    if stats is None:
        names = [n for n, m in ctx.model.named_modules() if any(True for _ in m.parameters(recurse=False))]
        stats = ctx.cache[key] = unit_stats(ctx.model, ctx.data, names)
    if ctx.target not in stats.pooled:
        raise CriterionError(
            f"criterion {kind!r} cannot score {ctx.target!r}: its module is never called directly by the model, so "
            "its activations cannot be seen; use a weight criterion (magnitude, l1, l2) for it"
        )
    if kind == "entropy":
        unit, _ = histogram_entropy(stats.pooled[ctx.target])
    else:
        unit = -stats.apoz[ctx.target]  # more zeros = less useful = lower score
    if weight.dim() == 0 or weight.shape[0] != unit.numel():
        raise CriterionError(
            f"criterion {kind!r} scores the {unit.numel()} output units of {ctx.target!r}, but {ctx.param!r} has "
            f"shape {tuple(weight.shape)}; use it on linear/conv/norm layers"
        )
    return unit.float().to(weight.device).reshape(-1, *([1] * (weight.dim() - 1))).expand_as(weight)


@register_criterion("entropy", reference="Luo & Wu 2017, An entropy-based pruning method for CNN compression")
def entropy(weight: Tensor, ctx: ScoreContext) -> Tensor:
    """Activation entropy of each output unit (bits, pooled over positions): low-information units go first."""
    return _unit_scores(weight, ctx, "entropy")


@register_criterion("apoz", reference="Hu et al. 2016, Network trimming (Average Percentage of Zeros)")
def apoz(weight: Tensor, ctx: ScoreContext) -> Tensor:
    """Average share of zeros after the layer's ReLU per unit: units that are mostly zero go first."""
    return _unit_scores(weight, ctx, "apoz")
