"""Entropy views: per-layer mean activation entropy against the most a layer can carry (log2 bins), with weight
entropy and dead-unit counts; and per-unit entropy of one layer with its dead units highlighted."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.container import BarContainer

from ._common import (
    ALERT_COLOR,
    category_ticks,
    layer_index,
    legend_below,
    muted_color,
    note_size,
    room_for_notes,
    text_color,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from ..analysis.entropy import EntropyResult

__all__ = ["plot_entropy", "plot_unit_entropy"]


def plot_entropy(ent: EntropyResult, ax: Axes | None = None, *, legend: bool = True, **style: Any) -> BarContainer:
    """Horizontal bars of each layer's mean activation entropy (bits), a diamond for its weight entropy, a dashed
    line at the maximum (log2 of the bins) and, in a column headed `dead`, `k/n` beside layers with k constant
    (dead) units of n. Returns the bars.

    >>> import numpy as np, matplotlib
    >>> matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> from workbench.analysis.entropy import EntropyResult
    >>> ent = EntropyResult(("a", "b"), (np.array([1.0, 0.0]), np.array([2.0, 3.0])),
    ...     (np.array([False, True]), np.array([False, False])), np.array([0.5, 2.5]), np.array([3.0, 4.0]), 32, 100)
    >>> fig, ax = plt.subplots()
    >>> bars = plot_entropy(ent, ax=ax)
    >>> [float(b.get_width()) for b in bars]
    [0.5, 2.5]
    >>> plt.close(fig)
    """
    ax = ax or plt.gca()
    n = len(ent.layers)
    y = np.arange(n)
    style.setdefault("height", 0.6)
    style.setdefault("color", "C0")
    bars = ax.barh(y, np.asarray(ent.mean, dtype=float), label="mean activation entropy", **style)
    ax.scatter(
        np.asarray(ent.weight, dtype=float),
        y,
        marker="D",
        s=max(6.0, min(30.0, 900.0 / max(n, 1))),
        color="C1",
        edgecolors=text_color(),
        linewidths=0.4,
        zorder=3,
        label="weight entropy",
    )
    ax.axvline(ent.max_bits, color=muted_color(), ls="--", lw=1, label=f"max: log2({ent.bins}) = {ent.max_bits:g} bits")
    size = note_size(ax, n)
    notes = []
    for i, dead in enumerate(ent.dead):  # in a column right of the maximum, clear of bars and diamonds
        k = int(np.sum(dead))
        if k:
            notes.append(f"all {k}" if k == len(dead) else f"{k}/{len(dead)}")
            ax.annotate(
                notes[-1],
                (ent.max_bits, i),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
                fontsize=size,
                color=ALERT_COLOR,
            )
    if notes:
        ax.annotate(
            "dead",
            (ent.max_bits, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(4, 2),
            textcoords="offset points",
            va="bottom",
            fontsize=max(size, 7.0),
            color=ALERT_COLOR,
        )
    top = max(ent.max_bits, float(np.nanmax(ent.weight)) if n else 0.0) * 1.05
    ax.set_xlim(0, room_for_notes(ax, [ent.max_bits] * len(notes), notes, size, lo=top) if notes else top)
    category_ticks(ax, list(ent.layers), "y")
    ax.set_ylim(n - 0.5, -0.5)  # first layer on top
    ax.set_xlabel("entropy (bits)")
    dead_total = sum(int(np.sum(d)) for d in ent.dead)
    units_total = sum(len(d) for d in ent.dead)
    ax.set_title(
        f"Entropy per layer: {dead_total} of {units_total} units dead ({ent.n} samples)",
        pad=14 if notes else None,  # room for the column header
    )
    if legend:
        legend_below(ax, 3)
    return bars


def plot_unit_entropy(
    ent: EntropyResult, layer: str | int, ax: Axes | None = None, *, legend: bool = True, **style: Any
) -> BarContainer:
    """Bars of the activation entropy of every unit of `layer` (a name or an index into `ent.layers`); dead units
    are red with a cross at 0 (their bar has no height). Returns the bars.

    >>> import numpy as np, matplotlib
    >>> matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> from workbench.analysis.entropy import EntropyResult
    >>> ent = EntropyResult(("a",), (np.array([1.0, 0.0, 2.0]),), (np.array([False, True, False]),),
    ...     np.array([1.0]), np.array([3.0]), 32, 100)
    >>> fig, ax = plt.subplots()
    >>> bars = plot_unit_entropy(ent, "a", ax=ax)
    >>> len(bars), ax.get_title()
    (3, 'a: 3 units, 1 dead')
    >>> plt.close(fig)
    """
    ax = ax or plt.gca()
    i = layer_index(ent.layers, layer)
    name = ent.layers[i]
    h = np.asarray(ent.units[i], dtype=float)
    dead = np.asarray(ent.dead[i], dtype=bool)
    x = np.arange(len(h))
    style.setdefault("width", 0.85)
    style.setdefault("color", "C0")
    bars = ax.bar(x, h, label="unit entropy", **style)
    for k in np.flatnonzero(dead):
        bars[k].set_color(ALERT_COLOR)
    if dead.any():
        ax.plot(
            x[dead],
            np.zeros(int(dead.sum())),
            ls="",
            marker="x",
            color=ALERT_COLOR,
            clip_on=False,
            zorder=3,
            label=f"dead ({int(dead.sum())})",
        )
    ax.axhline(ent.max_bits, color=muted_color(), ls="--", lw=1, label=f"max {ent.max_bits:g} bits")
    ax.axhline(float(ent.mean[i]), color="C1", ls=":", lw=1.5, label=f"layer mean {float(ent.mean[i]):.2f} bits")
    ax.set_ylim(0, ent.max_bits * 1.1)
    ax.set_xlim(-0.6, len(h) - 0.4)
    ax.set_xlabel("unit")
    ax.set_ylabel("activation entropy (bits)")
    title = f"{name}: {len(h)} units, {int(dead.sum())} dead"
    if name in ent.notes:
        title += f"\n{ent.notes[name]}"
    ax.set_title(title)
    if legend:
        legend_below(ax, 4)
    return bars
