"""The one strategy registry, shared by `compare` and `recommend`: an entry carries what each of them runs.

A `Strategy` is registered once under a name (and aliases). `compare` runs its ``fn(bench, sparsity, ctx)``; a
strategy `recommend` searches also has a family, granularity, criterion, allocation, a grid of ratios and
``plans(ctx, strategy)`` (how it builds its plans on one model). The same strategy under two names is one entry:
compare's ``"magnitude"`` and recommend's ``"global-magnitude"`` (one global magnitude threshold), compare's
``"filter-l1"`` and recommend's ``"structured-l1"`` (whole units by L1, the same share in every layer); either
name works with either function, and results keep the name they were asked for.

>>> get_strategy("structured-l1") is get_strategy("filter-l1")
True
>>> {"magnitude", "filter-l1", "global-magnitude"} <= set(available_strategies())
True
>>> candidate_names()[:2]
['global-magnitude', 'allocated-weight']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from .._registry import Registry
from ..errors import PlanError, suggest

__all__ = [
    "Strategy",
    "StrategyContext",
    "StrategyError",
    "available_strategies",
    "candidate_names",
    "get_strategy",
    "register_candidate",
    "register_strategy",
]


class StrategyError(PlanError):
    """A strategy name that is not registered, or a strategy that cannot run on this model at this sparsity."""


@dataclass(frozen=True)
class StrategyContext:
    """What a registered strategy gets besides the bench and the sparsity: `cache` is shared by every call of one
    `compare` run (a sensitivity scan is made once for all sparsities), `seed` the run's seed."""

    cache: dict[str, Any] = field(default_factory=dict)
    seed: int = 0


StrategyFn = Callable[[Any, float, StrategyContext], "Any"]


@dataclass(frozen=True)
class Strategy:
    """A registered strategy. For `compare`: ``fn(bench, sparsity, ctx)`` returns the Plan to apply (or applies
    steps itself and returns None); `structured`: it removes whole channels, so a physically smaller model can be
    built. For `recommend` (a candidate when `family` is set): `family` ``"unstructured"``, ``"structured"``,
    ``"N:M"`` or ``"block"``; `allocation` ``"global"``, ``"uniform"`` or ``"sensitivity"``; `grid` the ratios
    tried (for ``"sensitivity"``: the share of weights, or of FLOPs for structured, to remove); `rule` when to
    reach for it, in one line; ``plans(ctx, strategy) -> (ratio -> Plan, granularity)`` its plans on one model."""

    name: str
    fn: StrategyFn | None
    summary: str
    structured: bool = False
    label: str = ""
    family: str = ""
    granularity: str = ""
    criterion: str = ""
    allocation: str = ""
    grid: tuple[float, ...] = ()
    rule: str = ""
    plans: Callable[[Any, Strategy], Any] | None = None

    @property
    def comparable(self) -> bool:
        """`compare` can run it."""
        return self.fn is not None

    @property
    def candidate(self) -> bool:
        """`recommend` can search it."""
        return bool(self.family) and self.plans is not None


_REGISTRY: Registry[Strategy] = Registry("strategy", StrategyError)
_CANDIDATES: list[str] = []  # recommend's names, in the order it lists and tries them


def register_strategy(
    name: str, *, structured: bool = False, overwrite: bool = False, aliases: tuple[str, ...] = ()
) -> Callable[[StrategyFn], StrategyFn]:
    """Register ``fn(bench, sparsity, ctx) -> Plan | None`` under `name`; the docstring's first line is its summary.

    >>> from workbench import Plan
    >>> @register_strategy("half-magnitude-demo", overwrite=True)
    ... def _half(bench, sparsity, ctx):
    ...     '''Global magnitude at half the sparsity.'''
    ...     return Plan.global_(sparsity / 2)
    >>> "half-magnitude-demo" in available_strategies()
    True
    """

    def deco(fn: StrategyFn) -> StrategyFn:
        summary = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
        _REGISTRY.register(name, Strategy(name, fn, summary, structured), overwrite=overwrite, aliases=aliases)
        return fn

    return deco


def register_candidate(
    name: str,
    *,
    label: str,
    family: str,
    granularity: str,
    criterion: str,
    allocation: str,
    grid: tuple[float, ...],
    rule: str,
    plans: Callable[[Any, Strategy], Any],
    same_as: str | None = None,
    overwrite: bool = False,
) -> Strategy:
    """Make `name` a strategy `recommend` searches. `same_as`: an existing strategy this one is (the entry gains
    recommend's description and `name` becomes its alias); a registered `name` gains it likewise; else a new entry
    (that `compare` cannot run) is made."""
    spec = dict(label=label, family=family, granularity=granularity, criterion=criterion, allocation=allocation,
                grid=tuple(grid), rule=rule, plans=plans)  # fmt: skip
    base = same_as if same_as is not None else name if name in _REGISTRY else None
    if base is None:
        entry = _REGISTRY.register(
            name, Strategy(name, None, rule, family == "structured", **spec), overwrite=overwrite
        )
    else:
        old = _REGISTRY.get(base)
        if old.candidate and not overwrite:
            raise ValueError(f"strategy {base!r} is already a recommend candidate; pass overwrite=True to replace it")
        entry = _REGISTRY.replace(base, replace(old, **spec))
        if name != base and name not in _REGISTRY:
            _REGISTRY.alias(name, base)
    if name not in _CANDIDATES:
        _CANDIDATES.append(name)
    return entry


def available_strategies(pattern: str | None = None) -> list[str]:
    """Names `compare` runs (registered names and their aliases; `pattern` a glob such as ``"*l1"``).

    >>> {"magnitude", "random", "sensitivity", "entropy", "filter-l1"} <= set(available_strategies())
    True
    """
    return [n for n in _REGISTRY.names(pattern, aliases=True) if _REGISTRY.get(n).comparable]


def candidate_names(pattern: str | None = None) -> list[str]:
    """Names `recommend` lists and tries by default, in that order (`pattern`: a glob)."""
    import fnmatch

    return [n for n in _CANDIDATES if pattern is None or fnmatch.fnmatchcase(n, pattern)]


def get_strategy(name: str) -> Strategy:
    """The strategy registered as `name` (or an alias of it); a StrategyError names the closest ones."""
    if name in _REGISTRY:
        return _REGISTRY.get(name)
    names = _REGISTRY.names(aliases=True)
    raise StrategyError(
        f"unknown strategy {name!r}.{suggest(str(name), names, 'strategy')} "
        f"Valid strategies: {', '.join(names)} (or pass a Plan or a callable (bench, sparsity) -> Plan)."
    )
