"""Budget-driven allocation: per-layer ratios that remove a share of FLOPs, parameters or weights while
losing as little of the metric as the sensitivity curves predict.

Each row (a layer, or coupled layers) offers the scanned ratios; each option removes a known amount (counted
from the row's actual masks, so coupled input channels and BatchNorms count) and costs the predicted metric
change. The cheapest mix that meets the budget is a multiple-choice knapsack; we solve it greedily on each
row's lower convex hull (best metric per unit removed first), then bisect the last row's ratio between grid
points so the plan lands on the budget rather than overshooting it. The user hand-tunes from there.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import PlanError, WorkbenchWarning
from ..plan import LayerPlan, Plan
from ..state import as_state
from .sensitivity import SensitivityResult, rows_for

__all__ = ["Allocation", "allocate"]

TARGETS = ("flops", "params", "sparsity")


@dataclass(frozen=True)
class Allocation:
    """The plan, and per row the chosen ratio, the amount it removes and the predicted metric change.
    `bench.apply(allocation)` applies its plan."""

    plan: Plan
    rows: tuple[str, ...]
    ratios: np.ndarray
    removed: np.ndarray
    predicted: np.ndarray
    total: float
    target: str
    budget: float
    removed_total: float = 0.0
    units: str = ""  # of `predicted`, e.g. "Δloss"

    @property
    def achieved(self) -> float:
        """Share of `target` removed once the plan is applied (what was already pruned included), counted from
        the union of the rows' masks."""
        return float(self.removed_total / self.total)

    def __getattr__(self, name: str):
        # `bench.allocate` used to return the plan: its attributes still answer, with a warning, for one release
        if name.startswith("__") or name not in _PLAN_ATTRS:
            raise AttributeError(name)
        warnings.warn(
            f"bench.allocate(...) returns an Allocation now: use .plan.{name} (the plan) instead of .{name}",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(self.plan, name)


_PLAN_ATTRS = frozenset(n for n in dir(Plan) if not n.startswith("_")) | {
    "default",
    "layers",
    "scope",
    "include",
    "exclude",
}


def _hull(xs: np.ndarray, ys: np.ndarray) -> list[int]:
    """Indices of the lower convex hull of points sorted by x (ties: keep the lowest y)."""
    order = list(np.lexsort((ys, xs)))
    hull: list[int] = []
    for i in order:
        if hull and xs[i] == xs[hull[-1]]:
            continue
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            if (ys[b] - ys[a]) * (xs[i] - xs[a]) >= (ys[i] - ys[a]) * (xs[b] - xs[a]):
                hull.pop()
            else:
                break
        hull.append(i)
    return hull


def check_budget(budget: float, target: str) -> None:
    """Raise `PlanError` unless `target` is one of `TARGETS` and `budget` a share in (0, 1)."""
    if target not in TARGETS:
        raise PlanError(f"allocation target must be one of {TARGETS}, got {target!r}")
    if not isinstance(budget, (int, float)) or not 0 < budget < 1:
        raise PlanError(f"budget is the share of {target} to remove and must be in (0, 1), got {budget!r}")


def scan_for(state, granularity: str, criterion: str, ratios=None) -> SensitivityResult:
    """The sensitivity scan `allocate` makes when it is given none: the loss at `ratios` (default 0.1 to 0.9)."""
    from .sensitivity import sensitivity

    grid_ = ratios if ratios is not None else np.linspace(0.1, 0.9, 9)
    return sensitivity(state, grid_, granularity, criterion, metric="loss", progress=False)


def allocate(
    state,
    budget: float,
    target: str = "flops",
    granularity: str = "weight",
    criterion: str = "magnitude",
    sens: SensitivityResult | None = None,
    ratios=None,
    *,
    profile=None,
) -> Allocation:
    """Ratios per row removing at least `budget` (a share in (0, 1)) of the model's dense FLOPs (`flops`), of all
    its parameters (`params`) or of the prunable weights (`sparsity`); see the module docstring. `state`: a
    `workbench.State` (or a Workbench); `sens`: the scan to allocate from (else `scan_for` makes one); `profile`: the
    model's `workbench.analysis.profile` result for a FLOPs budget (else measured here)."""
    bench = as_state(state)
    check_budget(budget, target)
    if sens is None:  # loss, not accuracy: on a small calibration set accuracy rarely moves for one layer,
        # and a sum of zeros cannot rank the options
        sens = scan_for(bench, granularity, criterion, ratios)
    if sens.granularity != granularity or sens.criterion != criterion:
        raise PlanError(
            f"the sensitivity result is for {sens.granularity}/{sens.criterion}, not {granularity}/{criterion}; "
            "scan again with those settings or pass matching ones"
        )
    if sens.mode == "estimate" and "Fisher" not in sens.engine and bool(np.nanmin(sens.values) < 0):
        low = [sens.layers[i] for i in np.unique(np.nonzero(sens.values < 0)[0])]
        warnings.warn(
            f"first-order Taylor estimates predict that pruning lowers the loss for {low[:3]}"
            f"{' and others' if len(low) > 3 else ''}: near a trained optimum the gradient is noise, and an "
            "allocation from it can strip those layers (measured on digits-cnn: chance accuracy at 10% sparsity). "
            "Allocate from bench.sensitivity(mode='estimate', second_order=True) or mode='exact' instead.",
            WorkbenchWarning,
            stacklevel=2,
        )
    rows = [r for r in rows_for(bench, granularity, criterion) if r.label in sens.layers]
    model = bench.model
    from ..masks.select import DEFAULT_KINDS

    weights = {n for t in bench.targets if t.kind in DEFAULT_KINDS and not t.tied_to for n in t.param_names()}
    per_element: dict[str, float] = {}
    if target == "flops":
        if profile is None:
            from .profile import profile as measure

            with bench.store.lock:
                profile = measure(bench, repeats=1)
        prof = profile
        total = float(prof.total_flops_dense)
        for i, name in enumerate(prof.layers):
            for p in bench.targets[name].param_names():
                per_element[p] = prof.flops_dense[i] / max(1, prof.params[i])
    elif target == "params":
        total = float(sum(p.numel() for p in model.parameters()))
    else:
        total = float(sum(t.numel for t in bench.targets if t.kind in DEFAULT_KINDS and not t.tied_to))

    def removed(masks: dict[str, torch.Tensor]) -> float:
        out = 0.0
        for name, m in masks.items():
            cur = bench.store.current(name)
            count = float((m | cur).sum()) if cur is not None else float(m.sum())
            if target == "flops":
                out += count * per_element.get(name, 0.0)
            elif target == "params" or name in weights:
                out += count
        return out

    # what is already pruned (anywhere) counts towards the budget; each option adds what it removes beyond it
    base = removed({n: torch.zeros_like(m) for n, m in bench.store.masks().items()})
    grid = np.concatenate([[0.0], sens.ratios])
    options = []
    for row in rows:
        shapes = {n: m.shape for n, m in row.ranking.masks(float(sens.ratios.max())).items()}
        zeros = {n: torch.zeros(s, dtype=torch.bool) for n, s in shapes.items()}
        already = removed(zeros)

        def amount(r: float, row=row, zeros=zeros, already=already) -> float:
            return removed({**zeros, **row.ranking.masks(r)}) - already

        i = sens.layers.index(row.label)
        damage = np.concatenate([[0.0], -sens.values[i] if sens.higher_is_better else sens.values[i]])
        amounts = np.array([0.0] + [amount(float(r)) for r in sens.ratios])
        options.append((row, amount, np.maximum(amounts, 0.0), np.nan_to_num(damage, nan=np.inf)))
    need = budget * total - base
    hulls = [_hull(a, d) for _, _, a, d in options]
    state = [0] * len(options)

    def actual(ratios_: list[float]) -> float:
        """What the rows remove together: coupled rows share masks (a consumer's inputs), so not a sum."""
        union: dict[str, torch.Tensor] = {}
        for (row, _, _, _), r in zip(options, ratios_):
            if r > 0:
                for n, m in row.ranking.masks(r).items():
                    union[n] = m if n not in union else union[n] | m
        return removed(union) - removed({n: torch.zeros_like(m) for n, m in union.items()})

    got, last, goal = 0.0, None, need
    while True:
        while got < goal:
            best, slope = None, np.inf
            for k, ((_, _, a, d), h) in enumerate(zip(options, hulls)):
                if state[k] + 1 < len(h):
                    i, j = h[state[k]], h[state[k] + 1]
                    s = (d[j] - d[i]) / max(a[j] - a[i], 1e-12)
                    if s < slope:
                        best, slope = k, s
            if best is None:
                chosen = [float(grid[h[-1]]) for h in hulls]
                reach = (base + actual(chosen)) / total
                raise PlanError(
                    f"a budget of {budget:.0%} of {target} is out of reach with {granularity}/{criterion} at ratios "
                    f"up to {grid.max():g}: at most {reach:.1%} can be removed; lower the budget or scan higher ratios"
                )
            i, j = hulls[best][state[best]], hulls[best][state[best] + 1]
            got += float(options[best][2][j] - options[best][2][i])
            state[best] += 1
            last = best
        chosen = [float(grid[h[s]]) for h, s in zip(hulls, state)]
        short = need - actual(chosen)
        if short <= 0:
            break
        goal = got + short  # overlaps between coupled rows: ask the greedy for the shortfall again
    if last is not None:  # land on the budget: bisect the last row's ratio between its two hull points
        hi = chosen[last]
        lo = float(grid[hulls[last][state[last] - 1]])
        for _ in range(20):
            mid = (lo + hi) / 2
            if actual([mid if k == last else r for k, r in enumerate(chosen)]) >= need:
                hi = mid
            else:
                lo = mid
        chosen[last] = hi
    plan_layers = {}
    out_removed, out_pred = [], []
    for (row, amount, _, _), r in zip(options, chosen):
        out_pred.append(sens.predict(row.label, r) if r > 0 else 0.0)
        out_removed.append(amount(r) if r > 0 else 0.0)
        if r > 0:
            for m in row.members:
                plan_layers[m] = LayerPlan(r, granularity, criterion)
    if not plan_layers:
        raise PlanError("the budget is already met by the current pruning; nothing to allocate")
    return Allocation(
        Plan(plan_layers),
        tuple(o[0].label for o in options),
        np.array(chosen),
        np.array(out_removed),
        np.array(out_pred),
        total,
        target,
        budget,
        base + actual(chosen),
        sens.units,
    )
