"""compare's built-in strategies: each one file-local function plus its `register_strategy` line.

To add a strategy, write ``fn(bench, sparsity, ctx) -> Plan | None`` (docstring: a one-line summary) and register it:

>>> from workbench import Plan
>>> from workbench.compare import get_strategy
>>> @register_strategy("uniform-l2-demo", overwrite=True)
... def _uniform_l2(bench, sparsity, ctx):
...     '''Per-layer L2, the same share of every layer.'''
...     return Plan.uniform(sparsity, criterion="l2")
>>> get_strategy("uniform-l2-demo").summary
'Per-layer L2, the same share of every layer.'
"""

from __future__ import annotations

import math

from ..masks.granularity import structured_granularities
from ..plan import LayerPlan, Plan
from .registry import StrategyContext, StrategyError, register_strategy

__all__ = ["SCAN_RATIOS", "STRUCTURED"]  # noqa: F822  (STRUCTURED: module __getattr__)

SCAN_RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98)


def __getattr__(name: str):
    if name == "STRUCTURED":  # the registry's per-layer structured granularities, read when asked
        return structured_granularities()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# built-in strategies ----------------------------------------------------------------------------------------
def _structured_plan(bench, sparsity: float, criterion: str, kinds: tuple[str, ...] | None = None) -> Plan:
    """Each prunable layer that supports a structured unit loses `sparsity` of its units (filters of convs,
    neurons of linears, attention heads, LSTM units: the registry's `structured_granularities()`, the first one
    a layer offers); coupled layers are listed together with the same entry."""
    from ..masks.select import DEFAULT_KINDS

    layers = {}
    preferred = structured_granularities()
    for t in bench.targets:
        if t.kind not in DEFAULT_KINDS or t.tied_to or (kinds is not None and t.kind not in kinds):
            continue
        g = next((g for g in preferred if g in t.granularities), None)
        if g is not None:
            layers[t.name] = LayerPlan(sparsity, g, criterion)
    if not layers:
        what = "linear or conv layer with neurons/filters" if kinds else "layer with filters/neurons/units/heads"
        raise StrategyError(
            f"no {what} of {bench.name} can be pruned structurally (see bench.targets: a layer whose outputs are the "
            "model's outputs keeps them); use an unstructured strategy such as 'magnitude'"
        )
    return Plan(layers)


@register_strategy("magnitude")
def _magnitude(bench, sparsity: float, ctx: StrategyContext) -> Plan:
    """Global unstructured magnitude: the smallest weights of the whole model go first."""
    return Plan.global_(sparsity, criterion="magnitude")


@register_strategy("random")
def _random(bench, sparsity: float, ctx: StrategyContext) -> Plan:
    """Random weights (seeded): the baseline any criterion must beat."""
    return Plan.global_(sparsity, criterion="random")


@register_strategy("sensitivity")
def _sensitivity(bench, sparsity: float, ctx: StrategyContext) -> Plan:
    """Per-layer magnitude ratios allocated from a sensitivity scan (loss on calib) to remove `sparsity` of the
    prunable weights at the least predicted loss (`bench.allocate`)."""
    from ..analysis.allocate import allocate
    from ..analysis.sensitivity import sensitivity

    sens = ctx.cache.get("sensitivity")
    if sens is None:  # scanned once per compare run, at the starting state, attributed to the first row's time
        sens = ctx.cache["sensitivity"] = sensitivity(
            bench, SCAN_RATIOS, "weight", "magnitude", metric="loss", progress=False
        )
    return allocate(bench, sparsity, "sparsity", "weight", "magnitude", sens).plan


@register_strategy("entropy", structured=True)
def _entropy(bench, sparsity: float, ctx: StrategyContext) -> Plan:
    """Structured by activation entropy: the lowest-entropy neurons/filters of each linear/conv layer go first."""
    return _structured_plan(bench, sparsity, "entropy", kinds=("linear", "conv"))


@register_strategy("filter-l1", structured=True)
def _filter_l1(bench, sparsity: float, ctx: StrategyContext) -> Plan:
    """Structured L1 (Li et al.): whole filters, neurons, LSTM units or heads with the smallest L1 norm per layer."""
    return _structured_plan(bench, sparsity, "l1")


@register_strategy("block4x4")
def _block(bench, sparsity: float, ctx: StrategyContext) -> Plan:
    """Semi-structured: 4x4 blocks of each linear/conv weight with the smallest summed magnitude, per layer."""
    return Plan.uniform(sparsity, granularity="block4x4")


@register_strategy("2:4")
def _nm(bench, sparsity: float, ctx: StrategyContext) -> Plan:
    """N:M 2:4 (two of every four input weights kept; the pattern fixes sparsity 0.5), per layer by magnitude."""
    if not math.isclose(sparsity, 0.5):
        raise StrategyError(f"strategy '2:4' fixes the sparsity at 0.5 (2 of every 4 weights kept), got {sparsity:g}")
    return Plan.uniform(0.5, granularity="2:4")


@register_strategy("layer")
def _layer(bench, sparsity: float, ctx: StrategyContext) -> Plan:
    """Layer pruning: that share of the residual branches (lowest mean magnitude) removed whole; the skip
    connections keep the network connected (models without residual branches: an error naming why)."""
    return Plan.uniform(sparsity, granularity="layer")
