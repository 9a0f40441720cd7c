"""Allocation view: the ratio `bench.allocate` chose for each row, what share of the budget's quantity each row
removes and the metric change the sensitivity curves predict for it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.container import BarContainer

from ._common import category_ticks, muted_color, note_size, percent_axis, room_for_notes, text_color

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from ..analysis.allocate import Allocation

__all__ = ["plot_allocation"]


def plot_allocation(
    allocation: Allocation, ax: Axes | None = None, *, units: str | None = None, **style: Any
) -> BarContainer:
    """Horizontal bars of the chosen ratio per row, each annotated `ratio · predicted change · share of <target>
    removed` (the share is left out past 30 rows), titled with target, budget and what the plan achieves. `units` names the predicted change (default: the allocation's
    own `units` if it has one, else "predicted Δ"; `bench.allocate` predicts from a loss scan unless given `sens`).
    Returns the bars.

    >>> import numpy as np, matplotlib
    >>> matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> from workbench.analysis.allocate import Allocation
    >>> from workbench.plan import Plan
    >>> alloc = Allocation(Plan({}), ("a", "b"), np.array([0.2, 0.7]), np.array([10.0, 40.0]),
    ...     np.array([0.01, 0.05]), 100.0, "flops", 0.5, 50.0)
    >>> fig, ax = plt.subplots()
    >>> bars = plot_allocation(alloc, ax=ax)
    >>> [float(b.get_width()) for b in bars], ax.get_title().splitlines()[0]
    ([0.2, 0.7], 'Allocation: remove 50% of flops, achieved 50.0%')
    >>> plt.close(fig)
    """
    ax = ax or plt.gca()
    rows = list(allocation.rows)
    n = len(rows)
    y = np.arange(n)
    ratios = np.asarray(allocation.ratios, dtype=float)
    predicted = np.asarray(allocation.predicted, dtype=float)
    removed = np.asarray(allocation.removed, dtype=float)
    units = units or getattr(allocation, "units", None) or "predicted Δ"
    style.setdefault("height", 0.6)
    style.setdefault("color", "C0")
    bars = ax.barh(y, ratios, label="chosen ratio", **style)
    size = note_size(ax, n)
    total = float(allocation.total) or 1.0
    notes = []
    for i, (r, rem, p) in enumerate(zip(ratios, removed, predicted)):
        if r <= 0:
            notes.append("kept dense")
        elif n > 30:
            notes.append(f"{r:.0%} · {p:+.2g}")
        else:
            notes.append(f"{r:.0%} · {p:+.2g} · {rem / total:.1%} of {allocation.target}")
        ax.annotate(
            notes[-1], (r, i), xytext=(4, 0), textcoords="offset points", va="center", fontsize=size, color=text_color()
        )
    ax.axvline(1.0, color=muted_color(), lw=0.8, ls=":")
    ax.set_xlim(0, room_for_notes(ax, ratios, notes, size))
    ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0])
    percent_axis(ax, "x")
    legend = f"ratio · {units}" + ("" if n > 30 else f" · share of {allocation.target} removed")
    ax.set_xlabel(f"pruning ratio chosen per row\n(notes: {legend})")
    category_ticks(ax, rows, "y")
    ax.set_ylim(n - 0.5, -0.5)  # first row on top
    ax.set_title(
        f"Allocation: remove {allocation.budget:.0%} of {allocation.target}, achieved {allocation.achieved:.1%}\n"
        f"sum of the rows' {units}: {np.nansum(predicted):+.3g}"
    )
    return bars
