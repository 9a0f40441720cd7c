"""Per strategy: its plans on this model, the ratio that meets the budget, and fine-tuned variants."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch

from ..errors import PlanError
from ..plan import Plan
from .candidates import FINETUNE_RATIOS, Strategy
from .context import _Cand, _Ctx


# plans per strategy ---------------------------------------------------------------------------------------------
def _plan_fn(ctx: _Ctx, s: Strategy) -> tuple[Callable[[float], Plan], str]:
    """ratio -> Plan for strategy `s` on this model (PlanError if it does not apply), and its granularity here:
    what the registered entry's `plans` builds."""
    return s.plans(ctx, s)


def _search(ctx: _Ctx, s: Strategy, plan_of: Callable[[float], Plan], gran: str) -> _Cand | None:
    """Efficiency goals: the largest grid ratio within the drop budget (ascending, stopping at the first one over
    it); quality goals: the smallest ratio reaching the size ratio (bisection on the masks, one evaluation).
    When the budget is out of reach: the closest point, flagged by `_rows`."""

    def at(r: float):
        try:
            return ctx.masks(plan_of(r))
        except PlanError:  # e.g. an allocation out of reach
            return None

    if ctx.goal in ("latency", "size"):
        best = None
        for r in s.grid:
            masks = at(r)
            if masks is None:
                break
            clone = ctx.clone(masks)
            value = ctx.metric(clone)
            if best is None or ctx.drop(value) <= ctx.budget + 1e-12:
                best = (r, masks, clone, value)
            if ctx.drop(value) > ctx.budget + 1e-12:
                break
        return None if best is None else ctx.cand(s, gran, 0, best[0], plan_of(best[0]), *best[1:])
    resolved = [(r, m) for r, m in ((r, at(r)) for r in reversed(s.grid)) if m is not None][:1]
    if not resolved:
        return None
    hi, m_hi = resolved[0]
    lo = s.grid[0]
    if ctx.counts(m_hi)["size_ratio"] >= ctx.budget and lo < hi:
        m_lo = at(lo)
        if m_lo is not None and ctx.counts(m_lo)["size_ratio"] >= ctx.budget:
            hi, m_hi = lo, m_lo
        for _ in range(12):
            if hi - lo < 2e-3:
                break
            mid = (lo + hi) / 2
            m = at(mid)
            if m is not None and ctx.counts(m)["size_ratio"] >= ctx.budget:
                hi, m_hi = mid, m
            else:
                lo = mid
    clone = ctx.clone(m_hi)
    return ctx.cand(s, gran, 0, hi, plan_of(hi), m_hi, clone, ctx.metric(clone))


def _finetune(ctx: _Ctx, c: _Cand, plan_of, epochs: int) -> list[_Cand]:
    """Fine-tuned variants of a one-shot candidate, each on a copy of the model: at higher ratios for efficiency
    goals (as long as they stay within budget), at the same ratio for quality goals."""
    from ..bench import Workbench

    b, s = ctx.state, c.strategy
    if ctx.goal in ("latency", "size"):
        within = ctx.drop(c.value) <= ctx.budget + 1e-12
        ratios = [g for g in s.grid if (g > c.ratio if within else g >= c.ratio)][:FINETUNE_RATIOS]
    else:
        ratios = [c.ratio]
    out = []
    for r in ratios:
        try:
            plan = c.plan if r == c.ratio else plan_of(r)
            masks = c.masks if r == c.ratio else ctx.masks(plan)
        except PlanError:
            break
        model = copy.deepcopy(ctx.model)
        cb = Workbench(
            model, b.data, b.metric, train=b.train, calib=b.calib, example_inputs=b.example_inputs, seed=b.seed
        )
        cb.apply_masks(masks, label="candidate", evaluate=False)
        cb.finetune(epochs, progress=False, seed=b.seed)
        value = ctx.metric(model)
        out.append(ctx.cand(s, c.gran, epochs, r, plan, masks, model, value))
        if ctx.goal in ("latency", "size") and ctx.drop(value) > ctx.budget + 1e-12:
            break
    return out


def _potential(goal: str, device: torch.device, budget: float, higher: bool):
    """Which one-shot candidates fine-tuning is measured for first: those with the most to gain for the goal, also
    when over the drop budget. Latency: structured strategies (what they remove, dense kernels skip), then 2:4 on
    CUDA; size: the fewest parameters kept; quality goals: the most accurate at the size ratio."""

    def key(c: _Cand):
        if goal == "latency":
            tier = (
                0
                if c.strategy.family == "structured"
                else 1
                if (c.strategy.family, device.type) == ("N:M", "cuda")
                else 2
            )
            return (tier, c.counts["flops_kept"])
        if goal == "size":
            return (c.strategy.family != "structured", -c.counts["size_ratio"])
        return (c.counts["size_ratio"] < budget, -c.value if higher else c.value)

    return key
