"""Connectivity views: a layer's out x in connection strengths (log colour scale, pruned connections grey, dead
units marked beside the axes), before and after side by side, and surviving path counts per layer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import Colormap, LogNorm, Normalize
from matplotlib.image import AxesImage
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ._common import ALERT_COLOR, PRUNED_COLOR, category_ticks, finite_or_nan, legend_below, muted_color

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from ..analysis.connectivity import ConnectivityResult, PathResult

__all__ = ["connectivity_norm", "plot_connectivity", "plot_connectivity_pair", "plot_paths"]

STRENGTH = "connection strength Σ|w|"


def connectivity_norm(*matrices: np.ndarray) -> Normalize:
    """A log colour scale spanning the non-zero strengths of all `matrices` (linear 0..1 if there are none)."""
    pos = np.concatenate([np.asarray(m, dtype=float).ravel() for m in matrices])
    pos = pos[np.isfinite(pos) & (pos > 0)]
    if pos.size == 0:
        return Normalize(0.0, 1.0)
    lo, hi = float(pos.min()), float(pos.max())
    return LogNorm(lo if lo < hi else hi / 10.0, hi)


def _mark_dead(ax: Axes, dead_out: np.ndarray, dead_in: np.ndarray) -> None:
    """Red triangles just outside the image: left of dead output rows, above dead input columns."""
    rows, cols = np.flatnonzero(dead_out), np.flatnonzero(dead_in)
    common = dict(ls="", color=ALERT_COLOR, clip_on=False, zorder=4, markersize=5)
    if rows.size:
        ax.plot(np.full(rows.size, -0.015), rows, marker=">", transform=ax.get_yaxis_transform(), **common)
    if cols.size:
        ax.plot(cols, np.full(cols.size, 1.015), marker="v", transform=ax.get_xaxis_transform(), **common)


def plot_connectivity(
    conn: ConnectivityResult,
    ax: Axes | None = None,
    *,
    which: str = "after",
    cmap: str | Colormap = "viridis",
    norm: Normalize | None = None,
    colorbar: bool = True,
    legend: bool = True,
    **style: Any,
) -> AxesImage:
    """The out x in strength matrix `after` pruning (`conn.weight`) or `before` it (`conn.before`) on a log colour
    scale spanning both; pruned (zero) connections are grey, dead units get a red triangle. Returns the image.

    >>> import numpy as np, matplotlib
    >>> matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> from workbench.analysis.connectivity import ConnectivityResult
    >>> before = np.array([[1.0, 2.0], [0.5, 4.0]])
    >>> after = np.array([[0.0, 2.0], [0.0, 0.0]])
    >>> conn = ConnectivityResult("fc", after, before, (after == 0) & (before != 0),
    ...     np.array([False, True]), np.array([True, False]))
    >>> fig, ax = plt.subplots()
    >>> im = plot_connectivity(conn, ax=ax)
    >>> im.get_array().mask.tolist()
    [[True, False], [True, True]]
    >>> plt.close(fig)
    """
    if which not in ("after", "before"):
        raise ValueError(f"which must be 'after' or 'before', got {which!r}")
    ax = ax or plt.gca()
    m = np.asarray(conn.weight if which == "after" else conn.before, dtype=float)
    norm = norm if norm is not None else connectivity_norm(conn.weight, conn.before)
    style.setdefault("interpolation", "nearest")
    style.setdefault("aspect", "auto")
    cm = plt.get_cmap(cmap).with_extremes(bad=PRUNED_COLOR)
    im = ax.imshow(np.ma.masked_where(~(m > 0), m), cmap=cm, norm=norm, **style)
    out_n, in_n = m.shape
    ax.set_xlabel(f"input unit ({in_n})")
    ax.set_ylabel(f"output unit ({out_n})")
    ax.tick_params(axis="both", which="both", length=2)
    if which == "after":
        dead_out, dead_in = np.asarray(conn.dead_out, bool), np.asarray(conn.dead_in, bool)
        _mark_dead(ax, dead_out, dead_in)
        if dead_out.any():
            ax.tick_params(axis="y", pad=9)  # the row labels make way for the markers
        kept = 1.0 - float(np.mean(~(m > 0))) if m.size else 0.0
        ax.set_title(
            f"{conn.layer} now: {kept:.0%} of connections left\n"
            f"dead: {int(dead_out.sum())}/{out_n} outputs, {int(dead_in.sum())}/{in_n} inputs",
            pad=12 if dead_in.any() else None,  # clear of the markers above dead inputs
        )
    else:
        ax.set_title(f"{conn.layer} before pruning\n{int(np.sum(m > 0))} connections", pad=12)  # level with "after"
    if colorbar:
        ax.figure.colorbar(im, ax=ax, fraction=0.05, pad=0.03, label=STRENGTH)
    if legend and which == "after":  # a key for what is on show
        handles = []
        if not (m > 0).all():
            handles.append(Patch(facecolor=PRUNED_COLOR, edgecolor=muted_color(), lw=0.5, label="pruned"))
        if np.any(conn.dead_out) or np.any(conn.dead_in):
            handles.append(Line2D([], [], ls="", marker=">", color=ALERT_COLOR, label="dead unit"))
        if handles:
            legend_below(ax, len(handles), handles)
    return im


def plot_connectivity_pair(
    conn: ConnectivityResult, axes: Sequence[Axes] | None = None, *, cmap: str | Colormap = "viridis"
) -> tuple[AxesImage, AxesImage]:
    """`before` and `after` side by side on one shared log colour scale with one colour bar; makes a 1 x 2 figure
    when `axes` is None. Returns (before image, after image)."""
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 4.2), layout="constrained")
    if len(axes) != 2:
        raise ValueError(f"plot_connectivity_pair draws on 2 axes, got {len(axes)}")
    norm = connectivity_norm(conn.weight, conn.before)
    before = plot_connectivity(conn, axes[0], which="before", cmap=cmap, norm=norm, colorbar=False)
    after = plot_connectivity(conn, axes[1], which="after", cmap=cmap, norm=norm, colorbar=False)
    axes[1].set_ylabel("")
    axes[0].figure.colorbar(after, ax=list(axes), fraction=0.04, pad=0.02, label=STRENGTH)
    return before, after


def plot_paths(paths: PathResult, ax: Axes | None = None, *, legend: bool = True, **style: Any) -> list[Line2D]:
    """log10 of the surviving input-to-output paths reaching each layer, now and dense (two lines). A layer no path
    reaches any more gets a red cross at the bottom. Returns [now line, dense line].

    >>> import numpy as np, matplotlib
    >>> matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> from workbench.analysis.connectivity import PathResult
    >>> p = PathResult(("a", "b"), np.array([1.0, 2.0]), np.array([1.0, 3.0]))
    >>> fig, ax = plt.subplots()
    >>> now, dense = plot_paths(p, ax=ax)
    >>> now.get_ydata().tolist(), dense.get_ydata().tolist()
    ([1.0, 2.0], [1.0, 3.0])
    >>> plt.close(fig)
    """
    ax = ax or plt.gca()
    n = len(paths.layers)
    x = np.arange(n)
    now, dense = finite_or_nan(paths.log10_paths), finite_or_nan(paths.log10_paths_dense)
    small = n > 30
    (dense_line,) = ax.plot(x, dense, ls="--", marker="o", ms=3 if small else 5, color=muted_color(), label="dense")
    style.setdefault("marker", "o")
    style.setdefault("ms", 3 if small else 5)
    style.setdefault("color", "C0")
    (now_line,) = ax.plot(x, now, label="now", **style)
    gone = np.flatnonzero(np.isneginf(np.asarray(paths.log10_paths, dtype=float)))
    if gone.size:
        ax.plot(x[gone], np.zeros(gone.size), ls="", marker="x", color=ALERT_COLOR, label="no path left")
        ax.set_ylim(bottom=min(0.0, ax.get_ylim()[0]))
    category_ticks(ax, list(paths.layers), "x", rotation=40)
    ax.set_ylabel("log10 surviving paths")
    title = "Input-to-output paths per layer"
    last = np.flatnonzero(np.isfinite(now) & np.isfinite(dense))
    if gone.size:
        title += f": none left from {paths.layers[gone[0]]} on"
    elif last.size:
        title += f": {now[last[-1]] - dense[last[-1]]:+.1f} decades at {paths.layers[last[-1]]}"
    if paths.stopped:
        title += f"\n(propagation stopped at {paths.stopped})"
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    if legend:
        ax.legend(frameon=False, fontsize="small")
    return [now_line, dense_line]
