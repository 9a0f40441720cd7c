"""Side-by-side comparison of pruning strategies on one live model, from the same starting point.

`compare` applies each strategy at each sparsity to the live model, measures the result (metric, parameters kept,
FLOPs, latency of the model you could deploy, its size in bytes, seconds spent) and goes back to the starting state
with the mask store's exact undo before the next one: no copy of the model is kept (only `wb.sparse.compile`'s
smaller model for a structured strategy, to time it). The model ends bitwise as it started, also when a strategy
raises or the run is interrupted; a bench's history (steps that could be redone included) is left as it was.

Strategies are names in a registry (`available_strategies()`, `register_strategy`), a `Plan` (a plan with a default
is a template: its default ratio becomes each sparsity; a plan of explicit layers is applied as it is, once), a
callable ``fn(bench, sparsity) -> Plan | None`` (None: it applied its steps itself, e.g. prune and fine-tune), or a
``(label, strategy)`` pair.

Latency is measured, never assumed: with ``backend="shrink"`` a strategy that removes whole channels is timed as the
smaller model `wb.sparse.compile` builds, any other as the masked model itself (dense kernels: zeros cost as much as
any other number on a CPU); ``backend="auto"`` times what ``compile(backend="auto")`` picks; ``"masked"`` times the
masked model always; None skips timing.

The package, by seam: `registry` (the strategy registry shared with `recommend`), `strategies` (the built-ins),
`measure` (metric, sizes, FLOPs, interleaved latency, deployment), `result` (`CompareResult`, `pareto_front`) and
`run` (`compare` itself).

>>> import torch, workbench as wb
>>> torch.manual_seed(0) and None
>>> model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))
>>> data = [(torch.randn(64, 8), torch.randint(0, 3, (64,)))]
>>> res = compare(model, data, ["magnitude", "random"], [0.5, 0.9], backend=None)
>>> [(r["strategy"], r["sparsity"]) for r in res.rows]
[('magnitude', 0.5), ('magnitude', 0.9), ('random', 0.5), ('random', 0.9)]
>>> res.rows[1]["params"] < res.rows[0]["params"] < res.baseline["params"]
True
"""

from __future__ import annotations

from . import strategies as _strategies  # noqa: F401  (registers the built-in strategies)
from .measure import _deploy, _flops, _inputs, _latencies, _measure, _nonzero_params, _size_bytes  # noqa: F401
from .registry import (  # noqa: F401
    Strategy,
    StrategyContext,
    StrategyError,
    StrategyFn,
    available_strategies,
    candidate_names,
    get_strategy,
    register_candidate,
    register_strategy,
)
from .result import _COST_KEY, COSTS, CompareResult, pareto_front  # noqa: F401
from .run import BACKENDS, _compare, _normalize, _plan_for, _sparsities, compare  # noqa: F401
from .strategies import SCAN_RATIOS, _structured_plan  # noqa: F401

__all__ = [
    "CompareResult",
    "Strategy",
    "StrategyContext",
    "StrategyError",
    "available_strategies",
    "compare",
    "get_strategy",
    "pareto_front",
    "register_strategy",
]


def __getattr__(name: str):
    if name == "STRUCTURED":  # the registry's per-layer structured granularities, read when asked
        from ..masks.granularity import structured_granularities

        return structured_granularities()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
