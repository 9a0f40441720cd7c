"""From a plan to masks: resolve the plan against the model's targets, score, pick what to remove.

Everything here is read-only on the model: it returns boolean masks (True = remove) and the caller
(`MaskStore.apply_`) changes weights. Every problem with a plan is found before any mask is built.

Ratios are sparsities after the step: already-pruned weights (or whole units) count towards them and
are always kept pruned (their score is -inf). ``k = round(ratio * n)`` elements go, at most ``n - 1``,
so a layer is never emptied; ties are broken by position (stable sort), so exactly k go.

Patterned granularities: ``"N:M"`` fixes the sparsity (``1 - N/M``), so its ratio must be exactly that
(`workbench.masks.nm`); ``"blockRxC"`` prunes ``round(ratio * n_blocks)`` blocks (`workbench.masks.block`).
Both are per layer only (a global plan with them is an error).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatch

from torch import Tensor, nn

from ..criteria import get_criterion
from ..errors import GranularityError, ModelError, PlanError, suggest
from ..groups import GroupAnalysis
from ..plan import LayerPlan, Plan, as_plan
from ..targets import Target, Targets, pattern_fit
from .fastops import all_finite
from .granularity import Granularity, get_granularity, n_to_prune
from .rankings import (  # noqa: F401  (_scores, branch_scores: imported from here by analyses)
    Ranking,
    _scores,
    branch_masks,
    branch_scores,
    group_ranking,
    pattern_masks,
    weight_masks,
    weight_ranking,
)
from .store import MaskStore

__all__ = [
    "DEFAULT_KINDS",
    "Ranking",
    "Selection",
    "group_ranking",
    "n_to_prune",
    "pattern_masks",
    "select",
    "weight_masks",
    "weight_ranking",
]

DEFAULT_KINDS = ("linear", "conv", "lstm", "attention")  # what a plan's default covers without `include`


@dataclass(frozen=True)
class Selection:
    """What a plan removes: `masks` (full parameter name -> bool, True = pruned, including what was
    already pruned), `layers` the LayerPlan each pruned target got, `groups` the ratio per coupled
    group, `skipped` the targets the plan's default left alone and why."""

    masks: dict[str, Tensor]
    layers: dict[str, LayerPlan]
    groups: dict[str, LayerPlan] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def _check_fixed_ratio(g: Granularity, ratio: float, where: str) -> None:
    fixed = g.fixed_ratio
    if fixed is not None and abs(ratio - fixed) > 1e-6:
        n, m = g.shape
        raise PlanError(
            f"{where}: granularity {g.name!r} keeps {n} of every {m} weights, so its sparsity is fixed at {fixed:g}; "
            f"got ratio {ratio:g}. Use ratio={fixed:g} (e.g. Plan.uniform({fixed:g}, granularity={g.name!r})), "
            "or another N:M for another sparsity ('1:4' = 0.75, '2:8' = 0.75, '1:2' = 0.5)."
        )


def _check_entry(t: Target, lp: LayerPlan, what: str) -> None:
    g = get_granularity(lp.granularity)
    get_criterion(lp.criterion)
    if not t.supports(g.name):
        why = t.unsupported.get(g.name)
        if t.tied_to:
            why = f"it shares its weights with {t.tied_to!r}, which is pruned in its place"
        elif why is None and g.patterned:
            why = pattern_fit(g.name, t.kind, t.module_type, t.shape)
        elif why is None:
            alt = [x for x in t.granularities if x != "weight"]
            why = f"{g.name} applies to {'/'.join(g.kinds)} layers, not {t.kind}" + (f"; use {alt[0]!r}" if alt else "")
        raise GranularityError(
            f"{what} {t.name!r} ({t.module_type}) cannot be pruned by {g.name!r}: {why}. "
            f"It supports: {', '.join(t.granularities + t.patterns) or 'nothing'}."
        )


def _resolve(plan: Plan, targets: Targets) -> tuple[dict[str, LayerPlan], list[Target], dict[str, str]]:
    explicit: dict[str, LayerPlan] = {}
    for name, lp in plan.layers.items():
        t = targets[name]
        _check_entry(t, lp, "layer")
        _check_fixed_ratio(get_granularity(lp.granularity), lp.ratio, f"layer {name!r}")
        explicit[name] = lp
    default: list[Target] = []
    skipped: dict[str, str] = {}
    if plan.default is None:
        return explicit, default, skipped
    g = get_granularity(plan.default.granularity)
    get_criterion(plan.default.criterion)
    if plan.scope == "global" and (g.structured or g.patterned):
        raise PlanError(
            f"a global plan ranks single weights across layers; granularity {g.name!r} is not supported globally "
            "yet. Use Plan.uniform for structured and N:M/block pruning, or Plan.global_(..., granularity='weight')."
        )
    _check_fixed_ratio(g, plan.default.ratio, "the plan's default")
    for pat in (plan.include or ()) + plan.exclude:
        if not any(fnmatch(n, pat) for n in targets.names):
            raise PlanError(f"plan pattern {pat!r} matches no target.{suggest(pat, targets.names, 'target')}")
    for t in targets:
        if t.name in explicit:
            continue
        if plan.include is None:
            if t.kind not in DEFAULT_KINDS and t.kind not in g.default_kinds:
                continue
        elif not any(fnmatch(t.name, p) for p in plan.include):
            continue
        if any(fnmatch(t.name, p) for p in plan.exclude):
            continue
        try:
            _check_entry(t, plan.default, "layer")
        except GranularityError as e:
            if plan.include is not None and t.name in plan.include and not t.tied_to:
                # named by the user (not matched by a pattern), and not a tied alias pruned through its owner
                raise GranularityError(
                    f"the plan includes {t.name!r} by name, but: {e} Leave it out of include=, or give it its own "
                    f"LayerPlan with a granularity it supports."
                ) from None
            skipped[t.name] = str(e)
            continue
        default.append(t)
    if not default and not explicit:
        detail = "; ".join(f"{k}: {v}" for k, v in list(skipped.items())[:3])
        raise PlanError(f"the plan selects no target that supports {g.name!r}. {detail}")
    return explicit, default, skipped


def _finite(model: nn.Module, names: list[str]) -> None:
    for n in names:
        p = model.get_parameter(n)
        if not all_finite(p):
            raise ModelError(
                f"{n!r} contains NaN or inf, so its weights cannot be ranked; fix or re-initialise that layer "
                "(or exclude it from the plan) before pruning. Nothing was changed."
            )


def select(
    model: nn.Module,
    targets: Targets,
    groups: GroupAnalysis | None,
    plan: Plan,
    store: MaskStore,
    *,
    seed: int = 0,
    data=None,
    adapter=None,
) -> Selection:
    """Resolve `plan` on `model` and return the masks it asks for; the model is not changed. `adapter` says how to
    feed the model `data` (criteria that need activations or gradients)."""
    plan = as_plan(plan)
    explicit, default, skipped = _resolve(plan, targets)
    per_layer = dict(explicit)
    if plan.scope == "layer" and plan.default is not None:
        per_layer.update({t.name: plan.default for t in default})
    layered = {n: lp for n, lp in per_layer.items() if lp.granularity == "layer"}
    structured = {
        n: lp for n, lp in per_layer.items() if get_granularity(lp.granularity).structured and n not in layered
    }
    jobs: dict[str, LayerPlan] = {}
    for name, lp in structured.items():
        unit = get_granularity(lp.granularity).unit
        for gid in targets[name].groups:
            grp = groups.groups[gid]  # type: ignore[union-attr]  (structured support implies groups)
            if grp.unit != unit:
                continue
            missing = [p for p in grp.producers if p not in structured]
            blocked = [p for p in missing if p in targets and not targets[p].supports(lp.granularity)]
            if blocked and any(p in explicit for p in grp.producers):  # "add it to the plan" could not be followed
                why = targets[blocked[0]].unsupported.get(lp.granularity, "it does not offer that granularity")
                raise PlanError(
                    f"{name!r} shares its channels with {blocked[0]!r}, which cannot lose {lp.granularity}s ({why}): "
                    f"these channels cannot be removed together, so {name!r} cannot either. Prune {name!r} with "
                    "granularity='weight' (or an N:M pattern) instead."
                )
            if missing:
                if any(p in explicit for p in grp.producers):
                    raise PlanError(
                        f"{name!r} shares its channels with {missing} (a residual add, a concat or a depthwise conv "
                        f"couples them): their {lp.granularity}s can only be removed together. Add "
                        f"{', '.join(map(repr, missing))} to the plan with the same ratio and criterion, "
                        "or prune with granularity='weight'."
                    )
                skipped.setdefault(name, f"coupled with {missing}, which the plan leaves out")
                continue
            seen = {(structured[p].ratio, structured[p].criterion) for p in grp.producers}
            if len(seen) > 1:
                raise PlanError(
                    f"coupled layers {list(grp.producers)} share channels and must get the same ratio and criterion "
                    f"for {lp.granularity!r} pruning; the plan gives {sorted(seen)}"
                )
            jobs[gid] = lp
    weight_layers = {n: lp for n, lp in per_layer.items() if n not in structured and n not in layered}
    touched = [p for n in per_layer for p in targets[n].param_names()]
    touched += [m.param for gid in jobs for m in groups.groups[gid].members if m.producer]  # type: ignore[union-attr]
    if plan.scope == "global":
        touched += [p for t in default for p in t.param_names()]
    _finite(model, list(dict.fromkeys(touched)))

    new: dict[str, Tensor] = {}
    cache: dict = {} if adapter is None else {"adapter": adapter}  # shared by every criterion call of this selection

    def merge(masks: dict[str, Tensor]) -> None:
        for k, v in masks.items():
            new[k] = v if k not in new else new[k] | v

    for name, lp in weight_layers.items():
        t = targets[name]
        g = get_granularity(lp.granularity)
        if g.mask_fn is not None:  # a per-tensor pattern (N:M, blocks, a registered one): the entry selects
            merge(pattern_masks(model, store, t, g, lp.criterion, seed, (data, cache))(lp.ratio))
        elif g.family == "weight":
            pairs = [(t, p) for p in t.param_names()]
            merge(weight_masks(model, store, pairs, lp.criterion, lp.ratio, seed, data, cache))
        else:
            raise GranularityError(
                f"granularity {g.name!r} is neither structured (with a unit its coupled groups have) nor gives a "
                "mask_fn to select weights per tensor, so the workbench cannot tell what it removes; register it "
                "with mask_fn= or structured=True and a unit (see CONTRIBUTING.md)"
            )
    if plan.scope == "global" and default:
        pairs = [(t, p) for t in default for p in t.param_names()]
        merge(weight_masks(model, store, pairs, plan.default.criterion, plan.default.ratio, seed, data, cache))
        per_layer.update({t.name: plan.default for t in default})
    for gid, lp in jobs.items():
        merge(group_ranking(model, store, groups.groups[gid], lp.criterion, seed, data, cache).masks(lp.ratio))  # type: ignore[union-attr]
    if layered:
        merge(branch_masks(model, targets, groups, store, layered, seed, data, cache))
    for k in list(new):
        cur = store.current(k)
        if cur is not None:
            new[k] = new[k] | cur.to(new[k].device)
    layers = {
        n: lp
        for n, lp in per_layer.items()
        if n in layered or n not in structured or any(g in jobs for g in targets[n].groups)
    }
    return Selection(new, layers, jobs, skipped)
