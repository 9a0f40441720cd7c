"""What `compare` returns: one plain row per strategy and sparsity, the baseline, and the Pareto front."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._text import table_lines

__all__ = ["COSTS", "CompareResult", "pareto_front"]

COSTS = ("flops", "latency", "params", "size")  # x axes of a Pareto view: lower is better
_COST_KEY = {"flops": "flops", "latency": "latency_ms", "params": "params", "size": "size_bytes"}


# the result ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CompareResult:
    """One row per strategy and sparsity (plain dicts), and the starting state's measurements (`baseline`).

    Row keys: ``strategy``, ``sparsity`` (asked), ``achieved`` (share of prunable weights now zero), ``metric``,
    ``accuracy`` (None without class labels), ``delta`` (metric minus the baseline's), ``retention`` (metric /
    baseline metric), ``params`` (non-zero parameters), ``params_deployed`` (parameters the deployed model stores),
    ``flops`` (effective FLOPs per sample: dense FLOPs scaled by each layer's share of non-zero weights, what the
    sparsity could save at best), ``flops_deployed`` (FLOPs the deployed model executes per sample),
    ``latency_ms`` (measured, deployed model, per batch of `batch_size`), ``masked_latency_ms`` (the masked model,
    interleaved with it), ``start_latency_ms`` (the starting state, interleaved with both), ``speedup`` (median over
    the interleaved rounds of start / deployed latency), ``size_bytes`` (serialized state dict of the
    deployed model), ``deployed`` ("masked" or the compile backend), ``seconds`` (pruning and evaluating),
    ``error`` (None, or the message when ``on_error="record"``).
    """

    rows: tuple[dict[str, Any], ...]
    baseline: dict[str, Any]
    metric_name: str
    higher_is_better: bool
    strategies: tuple[str, ...]
    sparsities: tuple[float, ...]
    batch_size: int
    backend: str | None
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": [dict(r) for r in self.rows],
            "baseline": dict(self.baseline),
            "metric_name": self.metric_name,
            "higher_is_better": self.higher_is_better,
            "strategies": list(self.strategies),
            "sparsities": list(self.sparsities),
            "batch_size": self.batch_size,
            "backend": self.backend,
            "info": dict(self.info),
        }

    def to_pandas(self):
        import pandas as pd

        return pd.DataFrame(list(self.rows))

    def row(self, strategy: str, sparsity: float) -> dict[str, Any]:
        """The row of `strategy` at `sparsity`."""
        for r in self.rows:
            if r["strategy"] == strategy and (r["sparsity"] == sparsity or math.isclose(r["sparsity"] or -1, sparsity)):
                return r
        raise KeyError(f"no row for strategy {strategy!r} at sparsity {sparsity:g}; have {self.strategies}")

    def values(self, key: str, strategy: str | None = None) -> np.ndarray:
        """Column `key` as a float array (None -> NaN), optionally of one strategy's rows."""
        rows = [r for r in self.rows if strategy is None or r["strategy"] == strategy]
        return np.array([np.nan if r.get(key) is None else float(r[key]) for r in rows], dtype=float)

    def table(self) -> str:
        """The rows as aligned text, the baseline first."""

        def num(v: Any, fmt: str) -> str:
            return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)

        head = ("strategy", "sparsity", "achieved", self.metric_name, "Δ", "params", "MFLOPs", "ms", "speedup",
                "KiB", "deployed", "s")  # fmt: skip
        rows = [head]
        for r in (self.baseline, *self.rows):
            rows.append(
                (
                    str(r["strategy"]),
                    num(r["sparsity"], ".0%"),
                    num(r["achieved"], ".1%"),
                    num(r["metric"], ".4f"),
                    num(r["delta"], "+.4f"),
                    num(r["params"], ","),
                    num(None if r["flops"] is None else r["flops"] / 1e6, ".3f"),
                    num(r["latency_ms"], ".3f"),
                    num(r["speedup"], ".2f") + ("x" if r["speedup"] is not None else ""),
                    num(None if r["size_bytes"] is None else r["size_bytes"] / 1024, ".1f"),
                    str(r["deployed"]) if not r.get("error") else "error: " + r["error"][:60],
                    num(r["seconds"], ".2f"),
                )
            )
        lines = table_lines(rows, right=set(range(len(head))) - {0, 10})
        lines.append(
            f"latency: median ms per batch of {self.batch_size} ({self.backend or 'not measured'}); "
            f"{self.baseline['latency_ms'] or 0:.3f} ms at the start"
        )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def pareto_front(result: CompareResult, x: str = "flops") -> list[int]:
    """Indices of the rows no other row beats on both cost `x` ("flops", "latency", "params", "size"; lower is
    better) and the metric; sorted by cost. Rows with a missing value are left out."""
    if x not in COSTS:
        raise ValueError(f"x must be one of {COSTS}, got {x!r}")
    cost = result.values(_COST_KEY[x])
    y = result.values("metric")
    y = y if result.higher_is_better else -y
    ok = [i for i in range(len(cost)) if np.isfinite(cost[i]) and np.isfinite(y[i])]
    front = []
    for i in ok:
        dominated = any(
            cost[j] <= cost[i] and y[j] >= y[i] and (cost[j] < cost[i] or y[j] > y[i]) for j in ok if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: cost[i])
