"""The rows of a sensitivity scan: one per target (unstructured and per-tensor patterns) or per connected set of
coupled groups (structured), each with a `Ranking` that gives its masks at any ratio."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..errors import GranularityError
from ..masks.granularity import get_granularity
from ..masks.select import Ranking, _scores, group_ranking, pattern_masks
from ._ranking import PrefixRanking

__all__ = ["Row", "rows_for"]


@dataclass(frozen=True)
class Row:
    """One unit of decision: a layer, or layers whose channels are coupled and must be pruned together."""

    label: str
    members: tuple[str, ...]
    ranking: Ranking = field(repr=False, compare=False)


def rows_for(bench, granularity: str, criterion: str, layers: Sequence[str] | None = None) -> list[Row]:
    """The rows a scan covers: targets (unstructured) or connected coupled groups (structured)."""
    from ..masks.select import DEFAULT_KINDS

    g = get_granularity(granularity)
    targets = bench.targets
    if layers is not None:
        from ..masks.select import _check_entry
        from ..plan import LayerPlan

        for name in layers:  # the same reasons a plan naming the layer gets (tied weights, patterns, kinds)
            _check_entry(targets[name], LayerPlan(g.fixed_ratio or 0.5, g.name, criterion), "layer")
    kinds = DEFAULT_KINDS + g.default_kinds
    chosen = [t for t in targets if (t.name in layers if layers is not None else t.kind in kinds)]
    chosen = [t for t in chosen if t.supports(g.name)]
    if not chosen:
        raise GranularityError(f"no layer supports granularity {g.name!r}; see bench.targets")
    rows: list[Row] = []
    model, store, seed, data, cache = bench.model, bench.store, bench.seed, bench.calib, {}
    if g.name == "layer":  # one row per residual branch: removed whole at any ratio > 0
        names = {t.name for t in chosen}
        for b in bench.groups.branches.values():
            members = tuple(m for m in b.modules if m in names)
            if members:
                masks = {p: torch.ones_like(model.get_parameter(p), dtype=torch.bool) for p in b.params}
                rows.append(Row(members[0], members, _branch_ranking(masks)))
        return rows
    if not g.structured:
        for t in chosen:
            if g.mask_fn is not None:  # N:M, blocks or a registered per-tensor pattern: its entry selects
                at = pattern_masks(model, store, t, g, criterion, seed, (data, cache))
                fixed = g.fixed_ratio  # N:M fixes the sparsity: one mask, at the pattern's ratio
                rows.append(Row(t.name, (t.name,), _fixed_ranking(at(fixed), fixed) if fixed else _per_ratio(at)))
            else:  # the masks weight_ranking gives, without sorting a 100M-weight layer (see _ranking)
                env = (data, cache)
                scores = [_scores(model, store, t, p, criterion, seed, env) for p in t.param_names()]
                rows.append(Row(t.name, (t.name,), PrefixRanking(t.param_names(), scores)))
        return rows
    # structured: connected components of targets that share a coupled group
    comp: dict[str, set[str]] = {}
    for t in targets:
        for gid in t.groups:
            if bench.groups.groups[gid].unit == g.unit:  # o_proj is in a head group and the hidden group: apart
                comp.setdefault(gid, set()).update(bench.groups.groups[gid].producers)
    merged: list[tuple[set[str], set[str]]] = []  # (group ids, producers)
    for gid, prods in comp.items():
        hit = [m for m in merged if m[1] & prods]
        new = ({gid}, set(prods))
        for m in hit:
            new[0].update(m[0])
            new[1].update(m[1])
            merged.remove(m)
        merged.append(new)
    wanted = {t.name for t in chosen}
    order = {t.name: i for i, t in enumerate(targets)}
    for gids, prods in sorted(merged, key=lambda m: min(order[p] for p in m[1])):
        if not prods & wanted or not all(targets[p].supports(g.name) for p in prods):
            continue
        rankings = [
            group_ranking(model, store, bench.groups.groups[gid], criterion, seed, data, cache) for gid in sorted(gids)
        ]
        members = tuple(sorted(prods, key=order.__getitem__))
        rows.append(Row(members[0], members, _merged_ranking(rankings)))
    if not rows:
        raise GranularityError(f"no coupled group can be pruned by {g.name!r} with these layers")
    return rows


def _fixed_ranking(masks: dict[str, Tensor], ratio: float) -> Ranking:
    """A row whose pattern (N:M) allows one ratio only: its masks at that ratio, an error at any other."""

    class _Fixed(Ranking):
        def masks(self, r: float) -> dict[str, Tensor]:
            if abs(r - ratio) > 1e-9:
                raise GranularityError(f"this N:M pattern fixes the sparsity at {ratio:g}; got ratio {r:g}")
            return dict(masks)

    first = next(iter(masks.values()))
    return _Fixed(torch.zeros(0, dtype=torch.long), first.numel(), lambda chosen: dict(masks))


def _per_ratio(at: Callable[[float], dict[str, Tensor]]) -> Ranking:
    """A row whose masks its granularity's `mask_fn` selects at each ratio (blocks, a registered pattern)."""

    class _PerRatio(Ranking):
        def masks(self, r: float) -> dict[str, Tensor]:
            return at(r)

    return _PerRatio(torch.zeros(0, dtype=torch.long), 0, lambda chosen: {})


def _branch_ranking(masks: dict[str, Tensor]) -> Ranking:
    """A residual branch: gone at any ratio above 0 (a branch is one unit)."""

    class _Branch(Ranking):
        def masks(self, r: float) -> dict[str, Tensor]:
            return dict(masks) if r > 0 else {}

    return _Branch(torch.zeros(1, dtype=torch.long), 1, lambda chosen: dict(masks))


def _merged_ranking(rankings: list[Ranking]) -> Ranking:
    if len(rankings) == 1:
        return rankings[0]

    class _Many(Ranking):
        def masks(self, ratio: float) -> dict[str, Tensor]:
            out: dict[str, Tensor] = {}
            for r in rankings:
                for k, v in r.masks(ratio).items():
                    out[k] = v if k not in out else out[k] | v
            return out

    return _Many(rankings[0].order, rankings[0].n, rankings[0].to_masks)
