"""Pareto view of a strategy comparison: the metric against a cost (FLOPs, measured latency, parameters or size),
one marker style per strategy, a line through each strategy's sparsities and the Pareto front drawn over them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np

from ._common import legend_below

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from ..compare import CompareResult

__all__ = ["plot_pareto"]

_LABELS = {
    "flops": "effective MFLOPs per sample",
    "latency": "measured latency (ms per batch)",
    "params": "non-zero parameters",
    "size": "deployed size (KiB)",
}
_SCALE = {"flops": 1e-6, "latency": 1.0, "params": 1.0, "size": 1 / 1024}
_MARKERS = "osD^vP*Xh<>"


def plot_pareto(result: CompareResult, x: str = "flops", ax: Axes | None = None, *, front: bool = True,
                baseline: bool = True, **style: Any) -> dict[str, Any]:  # fmt: skip
    """The metric of every row against cost `x` ("flops", "latency", "params" or "size"); returns
    ``{"lines": {strategy: Line2D}, "front": Line2D | None, "baseline": Line2D | None}``.

    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt, torch, workbench as wb
    >>> torch.manual_seed(0) and None
    >>> m = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))
    >>> res = wb.compare(m, [(torch.randn(64, 8), torch.randint(0, 3, (64,)))], ["magnitude", "random"], [0.5, 0.9],
    ...                  backend=None)
    >>> fig, ax = plt.subplots()
    >>> art = plot_pareto(res, "params", ax=ax)
    >>> sorted(art["lines"]), ax.get_xlabel()
    (['magnitude', 'random'], 'non-zero parameters')
    >>> plt.close(fig)
    """
    from ..compare import _COST_KEY, COSTS, pareto_front

    if x not in COSTS:
        raise ValueError(f"x must be one of {COSTS}, got {x!r}")
    ax = ax or plt.gca()
    key, scale = _COST_KEY[x], _SCALE[x]
    lines: dict[str, Any] = {}
    for i, name in enumerate(result.strategies):
        cost = result.values(key, name) * scale
        y = result.values("metric", name)
        order = np.argsort(cost)
        (line,) = ax.plot(cost[order], y[order], marker=_MARKERS[i % len(_MARKERS)], label=name, **style)
        lines[name] = line
    front_line = base_line = None
    if front:
        idx = pareto_front(result, x)
        if idx:
            fx = result.values(key)[idx] * scale
            fy = result.values("metric")[idx]
            (front_line,) = ax.step(fx, fy, where="post", color="0.3", linestyle=":", linewidth=1.2, zorder=1,
                                    label="Pareto front")  # fmt: skip
    b = result.baseline
    if baseline and b.get(key) is not None:
        (base_line,) = ax.plot([b[key] * scale], [b["metric"]], marker="*", markersize=12, color="k",
                               linestyle="none", label="start")  # fmt: skip
    ax.set_xlabel(_LABELS[x])
    ax.set_ylabel(result.metric_name)
    ax.set_title(f"{result.info.get('model', '')}: {result.metric_name} vs {x}".strip(": "))
    ax.grid(True, alpha=0.3)
    if len(lines) > 4:
        legend_below(ax, ncols=3)
    else:
        ax.legend(fontsize="small")
    return {"lines": lines, "front": front_line, "baseline": base_line}
