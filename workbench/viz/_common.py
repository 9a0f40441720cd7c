"""Helpers shared by the plot functions: category ticks that stay readable from 5 to 500 rows, font sizes that
fit the axes, text colours that contrast with what they sit on, and labels for coupled rows."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import matplotlib as mpl
import numpy as np
from matplotlib.axes import Axes
from matplotlib.font_manager import FontProperties
from matplotlib.legend import Legend
from matplotlib.ticker import FixedLocator, PercentFormatter
from matplotlib.transforms import ScaledTranslation

MAX_LABELS = 30  # at most this many category labels on one axis; the rest get an unlabelled minor tick
MIN_FONT = 5.0  # points
PRUNED_COLOR = "0.78"  # light grey: distinct from viridis at both ends and from both light and dark backgrounds
MISSING_COLOR = "0.55"  # NaN cells of a heatmap
ALERT_COLOR = "tab:red"  # dead units; red reads as "bad" on light and dark backgrounds alike


def font_points(key: str = "ytick.labelsize") -> float:
    """An rcParams font size (which may be a name like 'medium') in points."""
    return float(FontProperties(size=mpl.rcParams[key]).get_size_in_points())


def axes_points(ax: Axes) -> tuple[float, float]:
    """Width and height of the axes in points (no renderer needed)."""
    pos = ax.get_position()
    fig = ax.figure
    while not hasattr(fig, "get_size_inches"):  # axes in a SubFigure: its root figure has the size
        fig = fig.figure
    w, h = fig.get_size_inches()
    return pos.width * w * 72.0, pos.height * h * 72.0


def row_labels(layers: Sequence[str], members: Sequence[Sequence[str]] | None = None) -> list[str]:
    """`label (+N)` for a row that stands for N more coupled layers than its label."""
    if members is None:
        return list(layers)
    return [f"{name} (+{len(m) - 1})" if len(m) > 1 else name for name, m in zip(layers, members)]


def category_ticks(
    ax: Axes, labels: Sequence[str], axis: str = "y", *, max_labels: int = MAX_LABELS, rotation: float | None = None
) -> list[int]:
    """Label categories 0..n-1 on `axis`, every k-th one when there are more than `max_labels` or when they would
    be smaller than `MIN_FONT`; every category keeps a minor tick. Returns the labelled positions."""
    n = len(labels)
    if n == 0:
        return []
    w, h = axes_points(ax)
    span = h if axis == "y" else w
    base = font_points("ytick.labelsize" if axis == "y" else "xtick.labelsize")
    spread = 1.6 if axis == "x" and rotation else 1.0  # slanted labels need more room along the axis
    step = max(1, math.ceil(n / max_labels), math.ceil(n * (MIN_FONT + 1.5) * spread / max(span, 1.0)))
    shown = list(range(0, n, step))
    size = max(MIN_FONT, min(base, span / max(len(shown), 1) * 0.75 / spread))
    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_ticks(shown, [labels[i] for i in shown], fontsize=size)
    target.set_minor_locator(FixedLocator([i for i in range(n) if i % step]))
    if axis == "x" and rotation:
        for t in target.get_ticklabels():
            t.set_rotation(rotation)
            t.set_horizontalalignment("right")
            t.set_rotation_mode("anchor")
    return shown


def note_size(ax: Axes, n: int) -> float:
    """Font size (points) for a note beside each of `n` rows: smaller than tick labels, never taller than a row."""
    _, h = axes_points(ax)
    return float(max(4.5, min(font_points("ytick.labelsize") * 0.8, h / max(n, 1) * 0.85)))


def room_for_notes(ax: Axes, ends: Sequence[float], notes: Sequence[str], size: float, lo: float = 1.05) -> float:
    """An upper x limit (data units, axis starting at 0) that leaves room for `notes` written right after `ends`,
    estimated from their length in characters (about 0.6 em each)."""
    w, _ = axes_points(ax)
    need = lo
    for end, note in zip(ends, notes):
        frac = min(0.8, (len(note) * 0.6 * size + 6.0) / max(w, 1.0))
        need = max(need, float(end) / (1.0 - frac))
    return need


def legend_below(ax: Axes, ncols: int, handles: Sequence[Any] | None = None) -> Legend:
    """A frameless legend centred under the x label (an offset in points, so any axes height works). Call it after
    the x label is set."""
    label = ax.get_xlabel()
    rc = mpl.rcParams
    below = font_points("xtick.labelsize") + rc["xtick.major.pad"] + rc["xtick.major.size"] + 6.0
    if label:
        below += (label.count("\n") + 1) * font_points("axes.labelsize") * 1.2 + rc["axes.labelpad"]
    where = ax.transAxes + ScaledTranslation(0, -below / 72.0, ax.figure.dpi_scale_trans)
    kw: dict[str, Any] = {"handles": handles} if handles is not None else {}
    return ax.legend(
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        bbox_transform=where,
        ncols=ncols,
        frameon=False,
        fontsize="small",
        **kw,
    )


def percent_axis(ax: Axes, axis: str = "x") -> None:
    """Tick labels of a 0..1 axis as percentages."""
    (ax.xaxis if axis == "x" else ax.yaxis).set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))


def contrast_text(rgba: Sequence[float]) -> str:
    """Black or white, whichever reads better on `rgba` (relative luminance, sRGB weights)."""
    r, g, b = (float(c) for c in rgba[:3])
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


def text_color() -> str:
    """The style's text colour: annotations beside bars follow light and dark styles."""
    return mpl.rcParams["text.color"]


def muted_color() -> str:
    """A grey for reference lines and 'dense' backgrounds that shows on light and dark styles."""
    return "0.5"


def finite_or_nan(a) -> np.ndarray:
    """A float copy of `a` with infinities replaced by NaN (matplotlib skips NaN; inf breaks autoscaling)."""
    out = np.array(a, dtype=float)
    out[~np.isfinite(out)] = np.nan
    return out


def layer_index(layers: Sequence[str], layer: str | int) -> int:
    """Position of `layer` (a name or an index) in `layers`, with an error that lists the choices."""
    if isinstance(layer, (int, np.integer)):
        if not -len(layers) <= layer < len(layers):
            raise IndexError(f"layer index {layer} is out of range for {len(layers)} layers")
        return int(layer) % len(layers)
    try:
        return list(layers).index(layer)
    except ValueError:
        raise KeyError(f"{layer!r} is not in this result; layers: {list(layers)}") from None
