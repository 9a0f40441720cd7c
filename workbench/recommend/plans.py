"""How a recommend candidate builds its plans on one model: ``plans(ctx, strategy) -> (ratio -> Plan, granularity)``,
one function per way of allocating (the `plans` of each registered candidate, `workbench.recommend.candidates`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..errors import GranularityError, PlanError
from ..masks.granularity import get_granularity, structured_granularities
from ..plan import LayerPlan, Plan

if TYPE_CHECKING:
    from ..compare.registry import Strategy
    from .context import _Ctx

__all__ = [
    "STRUCTURED",  # noqa: F822  (module __getattr__)
    "UNITS",
    "allocated",
    "global_",
    "structured_uniform",
    "uniform",
]

UNITS = {"filter": "filters", "neuron": "neurons", "head": "heads", "lstm-unit": "LSTM units"}


def __getattr__(name: str):
    if name == "STRUCTURED":  # the registry's per-layer structured granularities, read when asked
        return structured_granularities()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


Plans = tuple[Callable[[float], Plan], str]


def _structured_rows(bench, criterion: str, granularities: Sequence[str] | None = None) -> list[tuple[str, tuple]]:
    """(granularity, coupled members) of every row a structured plan can cover, one granularity per target
    (default: the registry's per-layer structured granularities, `structured_granularities()`)."""
    from ..analysis.sensitivity import rows_for

    granularities = structured_granularities() if granularities is None else tuple(granularities)
    out, seen = [], set()
    for g in granularities:
        try:
            rows = rows_for(bench, g, criterion)
        except (GranularityError, PlanError):
            continue
        for r in rows:
            if not seen & set(r.members):
                seen |= set(r.members)
                out.append((g, r.members))
    if not out:
        raise PlanError(f"no layer of this model can lose whole {'/'.join(UNITS.get(g, g) for g in granularities)}")
    return out


def global_(ctx: _Ctx, s: Strategy) -> Plans:
    """One threshold over every layer's weights."""
    return (lambda r: Plan.global_(r, criterion=s.criterion)), "weight"


def uniform(ctx: _Ctx, s: Strategy) -> Plans:
    """The same ratio of `s.granularity` (N:M, blocks) in every layer that supports it."""
    ctx.masks(
        Plan.uniform(s.grid[0], granularity=s.granularity, criterion=s.criterion)
    )  # raises if no layer supports it
    return (lambda r: Plan.uniform(r, granularity=s.granularity, criterion=s.criterion)), s.granularity


def structured_uniform(ctx: _Ctx, s: Strategy) -> Plans:
    """The same share of whole units (filters / neurons / heads / LSTM units) in every layer."""
    rows = _structured_rows(ctx.state, s.criterion)
    gran = "+".join(dict.fromkeys(g for g, _ in rows))
    return (lambda r: Plan({m: LayerPlan(r, g, s.criterion) for g, ms in rows for m in ms})), gran


def allocated(ctx: _Ctx, s: Strategy) -> Plans:
    """Per-layer ratios allocated from the model's sensitivity estimate: weights for a sparsity, or (structured)
    the channel granularity covering the most FLOPs for a FLOPs budget."""
    from ..analysis.allocate import allocate
    from ..analysis.sensitivity import sensitivity

    bench = ctx.state
    target, gran = "sparsity", "weight"
    if s.family == "structured":  # allocate over the granularity covering the most FLOPs
        target, best = "flops", -1.0
        for g in (g for g in structured_granularities() if get_granularity(g).unit == "channel"):
            try:
                rows = _structured_rows(bench, s.criterion, (g,))
            except PlanError:
                continue
            params = [p for _, ms in rows for m in ms for p in bench.targets[m].param_names()]
            fl = sum(ctx.flops_per_weight.get(p, 0.0) * ctx.model.get_parameter(p).numel() for p in params)
            if fl > best:
                best, gran = fl, g
        if best < 0:
            raise PlanError("no layer of this model can lose whole filters or neurons")
    if gran not in ctx.sens:
        grid = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
        # first order alone predicts loss *drops* for whole layers of a trained model (allocations then strip
        # them: digits-cnn fell to chance at 10%); the diagonal Fisher term makes the estimate usable
        ctx.sens[gran] = sensitivity(bench, grid, gran, s.criterion, mode="estimate", second_order=True, progress=False)
    sens = ctx.sens[gran]
    return (lambda r: allocate(bench, r, target, gran, s.criterion, sens, profile=ctx.prof).plan), gran
