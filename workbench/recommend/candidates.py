"""The goals, budgets and candidate strategies `recommend` knows, and the check of its arguments.

The candidates are entries of the one strategy registry (`workbench.compare.registry`), shared with `compare`: each
`register_candidate` line below gives an entry recommend's description and the function building its plans
(`workbench.recommend.plans`). ``global-magnitude`` is compare's ``magnitude`` and ``structured-l1`` its
``filter-l1`` (one entry, two names); ``2:4`` and ``block4x4`` carry the same name in both.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

from ..compare.registry import Strategy, candidate_names, get_strategy, register_candidate
from ..errors import WorkbenchError, suggest
from . import plans as _plans
from .plans import UNITS as UNITS

GOALS = ("latency", "size", "accuracy", "robustness")
DEFAULT_BUDGET = {"latency": 0.01, "size": 0.01, "accuracy": 2.0, "robustness": 2.0}
FGSM_EPS = 0.1
FINETUNE_STRATEGIES = 2  # how many strategies fine-tuning is measured for
FINETUNE_RATIOS = 2  # and at how many ratios each (efficiency goals)


class RecommendationError(WorkbenchError, ValueError):
    """`recommend` cannot run as asked: unknown goal, strategy or device, or a budget outside its range."""


_W = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
_U = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
for _name, _label, _family, _gran, _crit, _alloc, _grid, _rule, _plan, _same in (
    (
        "global-magnitude",
        "global magnitude",
        "unstructured",
        "weight",
        "magnitude",
        "global",
        _W,
        "most weights removed per point of accuracy; needs a sparse format to get smaller, dense kernels gain no speed",
        _plans.global_,
        "magnitude",
    ),
    (
        "allocated-weight",
        "sensitivity-allocated weights",
        "unstructured",
        "weight",
        "magnitude",
        "sensitivity",
        _W,
        "per-layer ratios from the model's own sensitivity estimate: spares the layers that hurt most",
        _plans.allocated,
        None,
    ),
    (
        "structured-l1",
        "structured L1",
        "structured",
        "filter/neuron/head/lstm-unit",
        "l1",
        "uniform",
        _U,
        "whole filters/neurons removed (shrink): smaller dense layers, faster on any device; fine-tune after",
        _plans.structured_uniform,
        "filter-l1",
    ),
    (
        "allocated-structured",
        "sensitivity-allocated channels",
        "structured",
        "filter/neuron",
        "l1",
        "sensitivity",
        _U[:7],
        "whole channels, per-layer ratios from the sensitivity estimate for a FLOPs budget; fine-tune after",
        _plans.allocated,
        None,
    ),
    (
        "2:4",
        "2:4 semi-structured",
        "N:M",
        "2:4",
        "magnitude",
        "uniform",
        (0.5,),
        "2 of every 4 weights: the pattern NVIDIA sparse tensor cores (Ampere+, fp16/bf16) run faster",
        _plans.uniform,
        None,
    ),
    (
        "block4x4",
        "4x4 blocks",
        "block",
        "block4x4",
        "magnitude",
        "uniform",
        _U[1:],
        "tiles of weights: block-sparse kernels (BSR on CUDA) at high block sparsity",
        _plans.uniform,
        None,
    ),
):
    register_candidate(
        _name,
        label=_label,
        family=_family,
        granularity=_gran,
        criterion=_crit,
        allocation=_alloc,
        grid=_grid,
        rule=_rule,
        plans=_plan,
        same_as=_same,
        overwrite=True,
    )
del _name, _label, _family, _gran, _crit, _alloc, _grid, _rule, _plan, _same  # fmt: skip


class _Candidates(Mapping[str, Strategy]):
    """`STRATEGIES`: recommend's view of the registry, live. Iterates recommend's names in order; any name of an
    entry recommend can search is a key (compare's ``"filter-l1"`` too); a value carries the name it was asked by."""

    def __getitem__(self, name: str) -> Strategy:
        try:
            s = get_strategy(name)
        except WorkbenchError:
            raise KeyError(name) from None
        if not s.candidate:
            raise KeyError(name)
        return s if s.name == name else replace(s, name=name)

    def __iter__(self) -> Iterator[str]:
        return iter(candidate_names())

    def __len__(self) -> int:
        return len(candidate_names())


STRATEGIES: Mapping[str, Strategy] = _Candidates()


def available_strategies() -> list[str]:
    """Names `recommend(strategies=...)` accepts.

    >>> available_strategies()[:2]
    ['global-magnitude', 'allocated-weight']
    """
    return list(STRATEGIES)


def _check(goal: Any, budget: Any, device: Any, strategies: Any, finetune: Any, timer: Any) -> tuple[float, list[str]]:
    if goal not in GOALS:
        raise RecommendationError(
            f"unknown goal {goal!r}.{suggest(str(goal), GOALS, 'goal')} Goals: {', '.join(GOALS)}"
        )
    if device not in ("cpu", "cuda"):
        raise RecommendationError(f"device must be 'cpu' or 'cuda', got {device!r}")
    if timer not in ("cpu", "wall"):
        raise RecommendationError(
            f"timer must be 'cpu' (process time, robust on a shared machine) or 'wall', got {timer!r}"
        )
    budget = DEFAULT_BUDGET[goal] if budget is None else budget
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not math.isfinite(budget):
        raise RecommendationError(f"budget must be a finite number, got {budget!r}")
    if goal in ("latency", "size") and budget < 0:
        raise RecommendationError(
            f"for goal {goal!r} the budget is the largest metric drop you accept (0.01 = one point of accuracy), "
            f"so it must be >= 0; got {budget!r}"
        )
    if goal in ("accuracy", "robustness") and budget < 1:
        raise RecommendationError(
            f"for goal {goal!r} the budget is the size ratio you need, dense parameters / parameters kept, >= 1 "
            f"(2.0 keeps at most half); got {budget!r}"
        )
    names = (
        list(STRATEGIES) if strategies is None else [strategies] if isinstance(strategies, str) else list(strategies)
    )
    if not names:
        raise RecommendationError(f"strategies is empty; choose from {available_strategies()}")
    for n in names:
        if n not in STRATEGIES:
            hint = suggest(str(n), STRATEGIES, "strategy")
            raise RecommendationError(f"unknown strategy {n!r}.{hint} Available: {available_strategies()}")
    if isinstance(finetune, bool) or not isinstance(finetune, int) or finetune < 0:
        raise RecommendationError(f"finetune is a number of epochs >= 0, got {finetune!r}")
    return float(budget), list(dict.fromkeys(names))
