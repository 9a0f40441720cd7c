"""The goals, budgets and candidate strategies `recommend` knows, and the check of its arguments."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..errors import WorkbenchError, suggest

GOALS = ("latency", "size", "accuracy", "robustness")
DEFAULT_BUDGET = {"latency": 0.01, "size": 0.01, "accuracy": 2.0, "robustness": 2.0}
STRUCTURED = ("filter", "neuron", "head", "lstm-unit")  # one per target kind, in this order
UNITS = {"filter": "filters", "neuron": "neurons", "head": "heads", "lstm-unit": "LSTM units"}
FGSM_EPS = 0.1
FINETUNE_STRATEGIES = 2  # how many strategies fine-tuning is measured for
FINETUNE_RATIOS = 2  # and at how many ratios each (efficiency goals)


class RecommendationError(WorkbenchError, ValueError):
    """`recommend` cannot run as asked: unknown goal, strategy or device, or a budget outside its range."""


@dataclass(frozen=True)
class Strategy:
    """A candidate: `family` ``"unstructured"``, ``"structured"``, ``"N:M"`` or ``"block"``; `allocation`
    ``"global"``, ``"uniform"`` or ``"sensitivity"``; `grid` the ratios tried (for ``"sensitivity"``: the share of
    weights, or of FLOPs for structured, to remove); `rule` when to reach for it, in one line."""

    name: str
    label: str
    family: str
    granularity: str
    criterion: str
    allocation: str
    grid: tuple[float, ...]
    rule: str


_W = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
_U = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
STRATEGIES: dict[str, Strategy] = {
    s[0]: Strategy(*s)
    for s in (
        ("global-magnitude", "global magnitude", "unstructured", "weight", "magnitude", "global", _W,
         "most weights removed per point of accuracy; needs a sparse format to get smaller, dense kernels gain no speed"),
        ("allocated-weight", "sensitivity-allocated weights", "unstructured", "weight", "magnitude", "sensitivity", _W,
         "per-layer ratios from the model's own sensitivity estimate: spares the layers that hurt most"),
        ("structured-l1", "structured L1", "structured", "filter/neuron/head/lstm-unit", "l1", "uniform", _U,
         "whole filters/neurons removed (shrink): smaller dense layers, faster on any device; fine-tune after"),
        ("allocated-structured", "sensitivity-allocated channels", "structured", "filter/neuron", "l1", "sensitivity",
         _U[:7], "whole channels, per-layer ratios from the sensitivity estimate for a FLOPs budget; fine-tune after"),
        ("2:4", "2:4 semi-structured", "N:M", "2:4", "magnitude", "uniform", (0.5,),
         "2 of every 4 weights: the pattern NVIDIA sparse tensor cores (Ampere+, fp16/bf16) run faster"),
        ("block4x4", "4x4 blocks", "block", "block4x4", "magnitude", "uniform", _U[1:],
         "tiles of weights: block-sparse kernels (BSR on CUDA) at high block sparsity"),
    )
}  # fmt: skip


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
