"""Profile view: per-layer horizontal bars of FLOPs (dense behind effective), latency, or parameters (all behind
non-zeros), with the model totals in the title."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.container import BarContainer
from matplotlib.ticker import FuncFormatter

from ._common import category_ticks, legend_below, muted_color, note_size, room_for_notes, text_color

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from ..analysis.profile import ProfileResult

__all__ = ["METRICS", "plot_profile"]

METRICS = ("flops", "latency", "params")


def _share_labels(ax: Axes, dense: np.ndarray, now: np.ndarray, size: float) -> None:
    """`NN%` (now / dense) right of each non-empty dense bar."""
    for i, (d, v) in enumerate(zip(dense, now)):
        if d > 0:
            ax.annotate(
                f"{v / d:.0%}",
                (d, i),
                xytext=(3, 0),
                textcoords="offset points",
                va="center",
                fontsize=size,
                color=text_color(),
            )


def plot_profile(
    prof: ProfileResult, ax: Axes | None = None, *, metric: str = "flops", legend: bool = True, **style: Any
) -> BarContainer:
    """Per-layer bars of `metric`: "flops" (dense MFLOPs as a grey bar behind the effective ones, share of dense
    beside), "latency" (measured ms) or "params" (parameter count behind non-zeros). Returns the front bars
    (effective FLOPs, latency or non-zeros); the grey ones are in `ax.containers`.

    >>> import numpy as np, matplotlib
    >>> matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> from workbench.analysis.profile import ProfileResult
    >>> a = np.array
    >>> prof = ProfileResult(("conv", "fc"), ("conv", "linear"), a([100, 10]), a([50, 10]), a([2e6, 1e4]),
    ...     a([1e6, 1e4]), a([0.2, 0.01]), a([1024, 40]), a([400, 40]), 2_010_000, 1_010_000, 0.3, 110, 64, "cpu", 5)
    >>> fig, ax = plt.subplots()
    >>> bars = plot_profile(prof, ax=ax)
    >>> [round(float(b.get_width()), 2) for b in bars], ax.get_xlabel()
    ([1.0, 0.01], 'MFLOPs (batch 64)')
    >>> plt.close(fig)
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    ax = ax or plt.gca()
    n = len(prof.layers)
    y = np.arange(n)
    size = note_size(ax, n)
    style.setdefault("color", "C0")
    if metric == "latency":
        ms = np.asarray(prof.latency_ms, dtype=float)
        style.setdefault("height", 0.6)
        bars = ax.barh(y, np.nan_to_num(ms), label="latency", **style)  # not measured (NaN): no bar
        ax.set_xlabel(f"latency (ms, median of {prof.repeats}, batch {prof.batch_size}, {prof.device})")
        title = f"Latency per layer: {prof.total_latency_ms:.3g} ms end to end"
        if np.isnan(ms).all():
            title += " (per-layer latency not measured)"
        else:
            title += f" ({np.nansum(ms):.3g} ms in these layers)"
        ax.set_title(title)
        legend = False
    else:
        if metric == "flops":
            dense = np.asarray(prof.flops_dense, dtype=float) / 1e6
            now = np.asarray(prof.flops_effective, dtype=float) / 1e6
            labels = ("dense", "effective (non-zero weights)")
            ax.set_xlabel(f"MFLOPs (batch {prof.batch_size})")
            td, te = prof.total_flops_dense / 1e6, prof.total_flops_effective / 1e6
            frac = te / td if td else 0.0
            ax.set_title(f"FLOPs per layer: {te:.4g} of {td:.4g} MFLOPs effective ({frac:.0%})")
        else:
            dense = np.asarray(prof.params, dtype=float)
            now = np.asarray(prof.nonzeros, dtype=float)
            labels = ("parameters", "non-zeros")
            ax.set_xlabel("parameters (count)")
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
            nz = int(np.sum(prof.nonzeros))
            ax.set_title(f"Parameters per layer: {nz:,} of {int(np.sum(prof.params)):,} non-zero in these layers")
        ax.barh(y, dense, height=0.8, color=muted_color(), alpha=0.45, label=labels[0])
        style.setdefault("height", 0.45)
        bars = ax.barh(y, now, label=labels[1], **style)
        _share_labels(ax, dense, now, size)
        top = float(np.nanmax(dense)) if n else 0.0
        top = top if top > 0 else 1.0
        ax.set_xlim(0, top * room_for_notes(ax, dense / top, ["100%"] * n, size, lo=1.02))
    category_ticks(ax, list(prof.layers), "y")
    ax.set_ylim(n - 0.5, -0.5)  # first layer on top
    if legend:
        legend_below(ax, 2)
    return bars
