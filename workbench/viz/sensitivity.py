"""Sensitivity heatmap: rows (layers or coupled groups) x pruning ratios, coloured by the metric change.

The colour map diverges at 0 and is oriented so that *damage is red*: for a metric where higher is better
(accuracy) negative changes are red, for one where lower is better (loss) positive changes are red. Cells that
were not computed (an interrupted scan) are grey and hatched. An estimate's title gives its trust figure (agreement
with exact values on the checked cells); a refine scan's title counts its exact cells, and each exact cell gets a
dark outline and a dot, so the map shows which cells are measured while it fills in (`update_sensitivity`).
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.collections import PatchCollection
from matplotlib.colors import CenteredNorm, Colormap
from matplotlib.image import AxesImage
from matplotlib.patches import Rectangle

from ._common import MISSING_COLOR, axes_points, category_ticks, contrast_text, row_labels

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from ..analysis.sensitivity import SensitivityResult

__all__ = ["plot_sensitivity", "update_sensitivity"]

MAX_ANNOTATED = (20, 12)  # annotate cells automatically up to this many rows x columns
MAX_RATIO_LABELS = 15

# per image: the overlays (NaN hatching, cell texts) that `update_sensitivity` replaces, and the annotate choice
_OVERLAYS: weakref.WeakKeyDictionary[AxesImage, dict[str, Any]] = weakref.WeakKeyDictionary()


def _cmap(sens: SensitivityResult, cmap: str | Colormap | None) -> Colormap:
    if cmap is None:  # RdBu runs red (low) to blue (high): low is bad when higher is better
        cmap = "RdBu" if sens.higher_is_better else "RdBu_r"
    return plt.get_cmap(cmap).with_extremes(bad=MISSING_COLOR)


def _halfrange(values: np.ndarray) -> float:
    finite = np.abs(values[np.isfinite(values)])
    m = float(finite.max()) if finite.size else 0.0
    return m if m > 0 else 1.0


def _title(sens: SensitivityResult) -> str:
    title = f"{sens.metric_name} sensitivity · {sens.granularity} / {sens.criterion} · {sens.mode}"
    trust = getattr(sens, "trust", None)
    checked = len(getattr(sens, "checks", ()))
    if sens.mode == "refine" and getattr(sens, "exact", None) is not None:
        ex = np.asarray(sens.exact, dtype=bool)
        title += f"\n{int(ex.sum())}/{ex.size} cells exact (•)"
        if trust is not None:
            title += f", estimate trust {trust:.2f}"
        return title
    if sens.mode == "estimate" and trust is not None:
        title += f"\n(trust {trust:.2f}: {checked} cells checked"
        scale = getattr(sens, "scale", None)
        if scale is not None and np.isfinite(scale) and not 0.5 <= scale <= 2.0:
            title += f"; values ~{scale:.2g}x the measured"
        title += ")"
    missing = int(np.isnan(np.asarray(sens.values, dtype=float)).sum())
    if missing or not sens.complete:
        title += f" (interrupted: {missing} cells missing)"
    return title


def _format(v: float) -> str:
    s = format(v, ".2g")
    return "0" if s in ("0", "-0") else s


def _exact_cells(sens: SensitivityResult) -> np.ndarray | None:
    """The cells to mark as measured: a refine scan's exact ones (an exact scan's are all exact: no marks)."""
    exact = getattr(sens, "exact", None)
    if sens.mode != "refine" or exact is None:
        return None
    return np.asarray(exact, dtype=bool)


def _draw_overlays(im: AxesImage, values: np.ndarray, annotate: bool, exact: np.ndarray | None = None) -> None:
    """Hatch missing cells, outline and dot exact ones (`exact`), and (optionally) write each value in its cell;
    replaces earlier overlays."""
    state = _OVERLAYS.setdefault(im, {"artists": [], "annotate": annotate})
    for artist in state["artists"]:
        artist.remove()
    state["artists"] = []
    ax = im.axes
    if exact is not None and exact.any():
        where = np.argwhere(exact)
        boxes = [Rectangle((j - 0.46, i - 0.46), 0.92, 0.92) for i, j in where]
        outline = PatchCollection(boxes, facecolor="none", edgecolor="0.1", linewidth=1.0, zorder=2.5)
        ax.add_collection(outline, autolim=False)
        (dots,) = ax.plot(where[:, 1] - 0.32, where[:, 0] - 0.28, "o", color="0.1", markersize=2.5, zorder=2.6)
        dots.set_gid("exact-cells")
        state["artists"] += [outline, dots]
    missing = np.argwhere(np.isnan(values))
    if len(missing):
        cells = [Rectangle((j - 0.5, i - 0.5), 1, 1) for i, j in missing]
        hatch = PatchCollection(cells, facecolor="none", edgecolor="0.35", hatch="///", linewidth=0, zorder=2)
        ax.add_collection(hatch, autolim=False)
        state["artists"].append(hatch)
    if annotate:
        rows, cols = values.shape
        w, h = axes_points(ax)
        size = float(np.clip(min(h / rows * 0.45, w / cols / 3.2), 5.0, 9.0))
        rgba = im.cmap(im.norm(np.ma.masked_invalid(values)))
        for i in range(rows):
            for j in range(cols):
                if np.isfinite(values[i, j]):
                    t = ax.text(
                        j,
                        i,
                        _format(values[i, j]),
                        ha="center",
                        va="center",
                        fontsize=size,
                        color=contrast_text(rgba[i, j]),
                        zorder=3,
                    )
                    state["artists"].append(t)


def plot_sensitivity(
    sens: SensitivityResult,
    ax: Axes | None = None,
    *,
    cmap: str | Colormap | None = None,
    annotate: bool | None = None,
    colorbar: bool = True,
    **style: Any,
) -> AxesImage:
    """Heatmap of `sens.values` (rows x ratios) on `ax` (default: the current axes); returns the image.

    `annotate=None` writes the values into the cells when there are at most 20 x 12 of them. Row labels show a
    coupled group as `first (+N)`; past 30 rows only every k-th row is labelled. Extra keywords go to `imshow`.

    >>> import numpy as np, matplotlib
    >>> matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> from workbench.analysis.sensitivity import SensitivityResult
    >>> sens = SensitivityResult(("fc1", "fc2"), (("fc1",), ("fc2", "fc3")), np.array([0.3, 0.6]),
    ...     np.array([[-0.01, -0.2], [0.0, np.nan]]), 0.9, "accuracy", True, "neuron", "l1", "exact")
    >>> fig, ax = plt.subplots()
    >>> im = plot_sensitivity(sens, ax=ax)
    >>> im.get_array().mask.tolist(), [t.get_text() for t in ax.get_yticklabels()]
    ([[False, False], [False, True]], ['fc1', 'fc2 (+1)'])
    >>> plt.close(fig)
    """
    ax = ax or plt.gca()
    values = np.array(sens.values, dtype=float)
    ratios = np.asarray(sens.ratios, dtype=float)
    if values.shape != (len(sens.layers), len(ratios)):
        raise ValueError(f"sensitivity values have shape {values.shape}, expected {(len(sens.layers), len(ratios))}")
    style.setdefault("interpolation", "nearest")
    style.setdefault("aspect", "auto")
    im = ax.imshow(
        np.ma.masked_invalid(values),
        cmap=_cmap(sens, cmap),
        norm=CenteredNorm(vcenter=0.0, halfrange=_halfrange(values)),
        **style,
    )
    step = max(1, -(-len(ratios) // MAX_RATIO_LABELS))
    ax.set_xticks(range(0, len(ratios), step), [f"{r:.0%}" for r in ratios[::step]])
    ax.set_xlabel("pruning ratio")
    coupled = any(len(m) > 1 for m in sens.members)
    ax.set_ylabel("coupled group" if coupled else "layer")
    ax.set_title(_title(sens))
    ax.tick_params(axis="both", which="both", length=2)
    if colorbar:
        cb = ax.figure.colorbar(im, ax=ax, fraction=0.05, pad=0.02)
        cb.set_label(sens.units)
    category_ticks(ax, row_labels(sens.layers, sens.members), "y")
    if annotate is None:
        annotate = values.shape[0] <= MAX_ANNOTATED[0] and values.shape[1] <= MAX_ANNOTATED[1]
    _draw_overlays(im, values, bool(annotate), _exact_cells(sens))
    return im


def update_sensitivity(im: AxesImage, sens: SensitivityResult) -> AxesImage:
    """Redraw an image from `plot_sensitivity` with new values of the same shape (a scan filling in), in place:
    `set_data`, a colour range that grows with the data, new overlays and title, then `draw_idle`."""
    values = np.array(sens.values, dtype=float)
    old = im.get_array().shape
    if values.shape != old:
        raise ValueError(
            f"update_sensitivity needs values of shape {old} (the plotted rows x ratios), got {values.shape}; "
            "call plot_sensitivity for a result with other rows or ratios"
        )
    im.set_data(np.ma.masked_invalid(values))
    if isinstance(im.norm, CenteredNorm):
        im.norm.halfrange = _halfrange(values)
    state = _OVERLAYS.get(im, {"annotate": False})
    _draw_overlays(im, values, state["annotate"], _exact_cells(sens))
    im.axes.set_title(_title(sens))
    im.axes.figure.canvas.draw_idle()
    return im
