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

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatch

import torch
from torch import Tensor, nn

from ..criteria import ScoreContext, get_criterion
from ..errors import GranularityError, ModelError, PlanError, suggest
from ..groups import ChannelGroup, GroupAnalysis
from ..plan import LayerPlan, Plan, as_plan
from ..targets import Target, Targets, pattern_fit
from .block import block_scores, expand_blocks
from .fastops import all_finite, scratch
from .granularity import Granularity, get_granularity, n_to_prune
from .nm import nm_mask
from .store import MaskStore
from .topk import lowest_k

__all__ = [
    "DEFAULT_KINDS",
    "Ranking",
    "Selection",
    "block_ranking",
    "group_ranking",
    "n_to_prune",
    "nm_masks",
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


def _scores(
    model: nn.Module, store: MaskStore, target: Target, param: str, criterion: str, seed: int, env, out=None
) -> Tensor:
    p = model.get_parameter(param)
    ctx = ScoreContext(param, target.name, model.get_submodule(target.name), model, seed, *env, out=out)
    s = get_criterion(criterion).score(p, ctx).float()
    cur = store.current(param)
    if cur is not None:
        s = s.masked_fill_(cur.to(s.device), -math.inf) if s is out else s.masked_fill(cur.to(s.device), -math.inf)
    return s


@dataclass(frozen=True)
class Ranking:
    """The order in which a job's units go (lowest score first), scored once: `masks(ratio)` for any ratio.

    A unit is a weight (unstructured) or a root channel of a coupled group (structured); `to_masks` turns
    a boolean vector over units into parameter masks.
    """

    order: Tensor
    n: int
    to_masks: Callable[[Tensor], dict[str, Tensor]]

    def masks(self, ratio: float) -> dict[str, Tensor]:
        chosen = torch.zeros(self.n, dtype=torch.bool, device=self.order.device)
        chosen[self.order[: n_to_prune(ratio, self.n)]] = True
        return self.to_masks(chosen)


def weight_ranking(
    model, store, pairs: list[tuple[Target, str]], criterion: str, seed: int, data=None, cache=None
) -> Ranking:
    """Unstructured ranking pooled over (target, param) pairs: one layer's tensors, or all of them (global)."""
    env = (data, {} if cache is None else cache)
    scores = [_scores(model, store, t, p, criterion, seed, env) for t, p in pairs]
    flat = torch.cat([s.reshape(-1).to(scores[0].device) for s in scores])

    def to_masks(chosen: Tensor) -> dict[str, Tensor]:
        out, i = {}, 0
        for (_, p), s in zip(pairs, scores):
            out[p] = chosen[i : i + s.numel()].view(s.shape).to(s.device)
            i += s.numel()
        return out

    return Ranking(torch.argsort(flat, stable=True), flat.numel(), to_masks)


def block_ranking(
    model, store, target: Target, param: str, shape: tuple[int, int], criterion: str, seed: int, data=None, cache=None
) -> Ranking:
    """Ranking of the R x C blocks of one weight (seen as out x in*kernel) by summed element score."""
    r, c = shape
    p = model.get_parameter(param)
    env = (data, {} if cache is None else cache)
    ctx = ScoreContext(param, target.name, model.get_submodule(target.name), model, seed, *env)
    scores = get_criterion(criterion).score(p, ctx).float()
    cur = store.current(param)
    grid = block_scores(scores, r, c, None if cur is None else cur.to(scores.device))
    return Ranking(
        torch.argsort(grid.reshape(-1), stable=True),
        grid.numel(),
        lambda chosen: {param: expand_blocks(chosen.view(grid.shape), r, c, p.shape).to(p.device)},
    )


def nm_masks(
    model, store, target: Target, param: str, shape: tuple[int, int], criterion: str, seed: int, data=None, cache=None
) -> dict[str, Tensor]:
    """N:M masks of one weight: the ``M - N`` lowest-scoring weights of every group of M along dim 1."""
    n, m = shape
    env = (data, {} if cache is None else cache)
    s = _scores(model, store, target, param, criterion, seed, env)  # already-pruned: -inf, so they go first
    cur = store.current(param)
    return {param: nm_mask(s, n, m, None if cur is None else cur.to(s.device))}


def _pattern_mask(model, store, target: Target, param: str, g: Granularity, lp: LayerPlan, seed: int, env) -> Tensor:
    """One tensor's mask from its granularity's `mask_fn`, given the criterion's raw element scores and what is
    already pruned (kept pruned: the result includes it)."""
    p = model.get_parameter(param)
    ctx = ScoreContext(param, target.name, model.get_submodule(target.name), model, seed, *env)
    scores = get_criterion(lp.criterion).score(p, ctx).float()
    cur = store.current(param)
    cur = None if cur is None else cur.to(scores.device)
    mask = g.mask_fn(scores, lp.ratio, cur, g)  # type: ignore[misc]
    if mask.shape != p.shape or mask.dtype != torch.bool:
        raise GranularityError(
            f"granularity {g.name!r}: its mask_fn returned a {mask.dtype} mask of shape {tuple(mask.shape)} for "
            f"{param!r} of shape {tuple(p.shape)}; it must return a bool mask of the weight's shape"
        )
    return (mask if cur is None else mask | cur).to(p.device)


def weight_masks(
    model, store, pairs: list[tuple[Target, str]], criterion: str, ratio: float, seed: int, data=None, cache=None
) -> dict[str, Tensor]:
    """Unstructured masks pooled over (target, param) pairs at one ratio: the same masks as
    ``weight_ranking(...).masks(ratio)`` (ties by position), found by a sampled bracket and one band of candidates
    (`workbench.masks.topk`) instead of one argsort of all scores concatenated, so a global plan on a large
    model needs about one byte per weight on top of the model (plus the store's undo data)."""
    env = (data, {} if cache is None else cache)
    params = [model.get_parameter(p) for _, p in pairs]
    n = sum(p.numel() for p in params)
    # every tensor's scores go into one reused buffer (lowest_k copies what it keeps): no fresh memory per tensor
    buffers = scratch(((p.device, p.numel()) for p in params), torch.float32)

    def fn(t: Target, name: str, p: Tensor) -> Tensor:
        out = buffers[p.device][: p.numel()].view(p.shape)
        return _scores(model, store, t, name, criterion, seed, env, out)

    fns = [lambda t=t, name=name, p=p: fn(t, name, p) for (t, name), p in zip(pairs, params)]
    masks = lowest_k(fns, n_to_prune(ratio, n))
    return {p: m for (_, p), m in zip(pairs, masks)}


def group_ranking(model, store, grp: ChannelGroup, criterion: str, seed: int, data=None, cache=None) -> Ranking:
    """Ranking of a coupled group's root channels by mean element score over every producer's slice."""
    score = torch.zeros(grp.size, dtype=torch.float64)
    alive = torch.zeros(grp.size, dtype=torch.float64)
    count = torch.zeros(grp.size, dtype=torch.float64)
    crit = get_criterion(criterion)
    cache = {} if cache is None else cache
    for m in grp.members:
        if not m.producer:
            continue
        p = model.get_parameter(m.param)
        tname = m.param.rsplit(".", 1)[0] if "." in m.param else ""
        ctx = ScoreContext(m.param, tname, model.get_submodule(tname), model, seed, data, cache)
        s = crit.score(p, ctx).double().movedim(m.dim, 0).reshape(p.shape[m.dim], -1).sum(1).cpu()
        score.index_add_(0, m.root, s[m.index])
        count.index_add_(0, m.root, torch.full((m.index.numel(),), p.numel() / p.shape[m.dim], dtype=torch.float64))
        cur = store.current(m.param)
        live = torch.ones(p.shape[m.dim], dtype=torch.float64)
        if cur is not None:
            live = (~cur).movedim(m.dim, 0).reshape(p.shape[m.dim], -1).any(1).double().cpu()
        alive.index_add_(0, m.root, live[m.index])
    # mean score per weight: channels of a concat can have different numbers of producers behind them
    score = score / count.clamp(min=1)
    score[alive == 0] = -math.inf
    shapes = {m.param: model.get_parameter(m.param).shape for m in grp.members}
    return Ranking(torch.argsort(score, stable=True), grp.size, lambda chosen: grp.masks(chosen, shapes))


def branch_scores(model, targets: Targets, groups, store, ids, criterion: str, seed: int, data=None, cache=None):
    """Mean element score of each residual branch over its layers' prunable weights (pruned weights count as 0;
    a branch whose weights are all pruned scores -inf: it is already gone)."""
    env = (data, {} if cache is None else cache)
    crit = get_criterion(criterion)
    out = []
    for bid in ids:
        b = groups.branches[bid]
        total, n, alive = 0.0, 0, False
        for mname in b.modules:
            if mname not in targets.names:
                continue
            t = targets[mname]
            for p in t.param_names():
                w = model.get_parameter(p)
                ctx = ScoreContext(p, t.name, model.get_submodule(t.name), model, seed, *env)
                sc = crit.score(w, ctx).double()
                cur = store.current(p)
                if cur is not None:
                    sc = sc.masked_fill(cur.to(sc.device), 0.0)
                    alive = alive or not bool(cur.all())
                else:
                    alive = True
                total += float(sc.sum())
                n += sc.numel()
        out.append(total / max(n, 1) if alive else -math.inf)
    return torch.tensor(out, dtype=torch.float64)


def branch_masks(model, targets: Targets, groups, store, layered: dict[str, LayerPlan], seed, data=None, cache=None):
    """Masks of the ``layer`` plan entries: of the residual branches holding these layers, the `ratio` share with
    the lowest mean score go, every parameter of their modules masked."""
    seen = {(lp.ratio, lp.criterion) for lp in layered.values()}
    if len(seen) > 1:
        raise PlanError(
            "granularity 'layer' removes whole residual branches, ranked against each other: give every 'layer' "
            f"entry of the plan the same ratio and criterion (got {sorted(seen)}), e.g. "
            "Plan.uniform(0.5, granularity='layer')"
        )
    ratio, criterion = next(iter(seen))
    ids = list(dict.fromkeys(b for n in layered for b in targets[n].branches))
    scores = branch_scores(model, targets, groups, store, ids, criterion, seed, data, cache)
    k = min(math.floor(ratio * len(ids) + 0.5), len(ids))  # all of them may go: the skips keep the net connected
    out: dict[str, Tensor] = {}
    for i in torch.argsort(scores, stable=True)[:k].tolist():
        for p in groups.branches[ids[i]].params:
            out[p] = torch.ones_like(model.get_parameter(p), dtype=torch.bool)
    return out


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
            env = (data, cache)
            for p in t.param_names():
                merge({p: _pattern_mask(model, store, t, p, g, lp, seed, env)})
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
