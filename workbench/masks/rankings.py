"""Rankings: the order in which a plan's units go (weights, pattern groups, blocks, coupled channels, residual
branches), scored once by the plan's criterion (`workbench.masks.select` resolves plans into them)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..criteria import ScoreContext, get_criterion
from ..errors import GranularityError, PlanError
from ..groups import ChannelGroup
from ..plan import LayerPlan
from ..targets import Target, Targets
from .fastops import scratch
from .granularity import Granularity, n_to_prune
from .store import MaskStore
from .topk import lowest_k

__all__ = [
    "Ranking",
    "branch_masks",
    "branch_scores",
    "group_ranking",
    "pattern_masks",
    "weight_masks",
    "weight_ranking",
]


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


def pattern_masks(
    model, store, target: Target, g: Granularity, criterion: str, seed: int, env
) -> Callable[[float], dict[str, Tensor]]:
    """``ratio -> masks`` of one target under a per-tensor pattern (N:M, blocks, a registered `mask_fn`): each tensor
    is scored once by `criterion`; its granularity's `mask_fn` selects from the raw scores and what is already
    pruned (kept pruned: the masks include it)."""
    scored = []
    for param in target.param_names():
        p = model.get_parameter(param)
        ctx = ScoreContext(param, target.name, model.get_submodule(target.name), model, seed, *env)
        scores = get_criterion(criterion).score(p, ctx).float()
        cur = store.current(param)
        scored.append((param, p, scores, None if cur is None else cur.to(scores.device)))

    def at(ratio: float) -> dict[str, Tensor]:
        out = {}
        for param, p, scores, cur in scored:
            mask = g.mask_fn(scores, ratio, cur, g)  # type: ignore[misc]
            if mask.shape != p.shape or mask.dtype != torch.bool:
                raise GranularityError(
                    f"granularity {g.name!r}: its mask_fn returned a {mask.dtype} mask of shape {tuple(mask.shape)} "
                    f"for {param!r} of shape {tuple(p.shape)}; it must return a bool mask of the weight's shape"
                )
            out[param] = (mask if cur is None else mask | cur).to(p.device)
        return out

    return at


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
