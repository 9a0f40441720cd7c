"""Monitoring view: agreement of the pruned model with its reference per batch and running, the alert threshold,
the batches that crossed it, and the confidence drift on a twin axis. `update_monitor` redraws a live plot in place
(`set_data` + `draw_idle`) as batches arrive."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np

from ._common import ALERT_COLOR

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from ..monitor import MonitorResult

__all__ = ["plot_monitor", "update_monitor"]


def _data(result: MonitorResult) -> dict[str, np.ndarray]:
    batch = result.series("batch")
    agree = result.series("agreement")
    below = np.array([bool(r["below"]) for r in result.records], dtype=bool)
    return {
        "batch": batch,
        "agreement": agree,
        "running": result.series("running_agreement"),
        "drift": result.series("drift"),
        "alert_x": batch[below],
        "alert_y": agree[below],
    }


def plot_monitor(result: MonitorResult, ax: Axes | None = None, *, drift: bool = True) -> dict[str, Any]:
    """Agreement per batch (markers) and running (line), the threshold, alerts (red) and, with `drift`, the
    confidence drift on a right-hand axis. Returns the artists by name (for `update_monitor`).

    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt, torch, workbench as wb
    >>> m = torch.nn.Linear(4, 3)
    >>> res = wb.monitor(m, m, [torch.randn(8, 4) for _ in range(3)], threshold=0.9)
    >>> fig, ax = plt.subplots()
    >>> art = plot_monitor(res, ax=ax)
    >>> art["batch"].get_ydata().tolist()
    [1.0, 1.0, 1.0]
    >>> plt.close(fig)
    """
    ax = ax or plt.gca()
    d = _data(result)
    (batch,) = ax.plot(d["batch"], d["agreement"], marker="o", linestyle="none", alpha=0.6, label="agreement (batch)")
    (running,) = ax.plot(d["batch"], d["running"], color="tab:blue", label="agreement (running)")
    (alerts,) = ax.plot(d["alert_x"], d["alert_y"], marker="x", markersize=9, color=ALERT_COLOR, linestyle="none",
                        label="below threshold")  # fmt: skip
    threshold = None
    if result.threshold is not None:
        threshold = ax.axhline(result.threshold, color=ALERT_COLOR, linestyle="--", linewidth=1, label="threshold")
    ax.set_xlabel("batch")
    ax.set_ylabel(f"agreement with {result.reference}")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(True, alpha=0.3)
    drift_line = None
    if drift:
        twin = ax.twinx()
        (drift_line,) = twin.plot(d["batch"], d["drift"], color="tab:orange", linewidth=1, label="confidence drift")
        twin.axhline(0.0, color="tab:orange", linewidth=0.5, alpha=0.5)
        twin.set_ylabel("confidence drift (pruned - reference)")
        _drift_limits(twin, d["drift"])
    handles = [h for h in (batch, running, alerts, threshold, drift_line) if h is not None]
    ax.legend(handles=handles, fontsize="small", loc="lower left")
    ax.set_title(f"{result.totals['n']} samples: agreement {result.agreement:.3f}, {len(result.alerts)} alert(s)")
    return {"batch": batch, "running": running, "alerts": alerts, "threshold": threshold, "drift": drift_line}


def _drift_limits(ax: Axes, drift: np.ndarray) -> None:
    finite = drift[np.isfinite(drift)]
    m = float(np.abs(finite).max()) if finite.size else 0.0
    m = m * 1.15 if m > 0 else 0.05
    ax.set_ylim(-m, m)


def update_monitor(artists: dict[str, Any], result: MonitorResult) -> None:
    """Redraw a `plot_monitor` figure with a newer result of the same monitor (in place)."""
    d = _data(result)
    artists["batch"].set_data(d["batch"], d["agreement"])
    artists["running"].set_data(d["batch"], d["running"])
    artists["alerts"].set_data(d["alert_x"], d["alert_y"])
    ax = artists["batch"].axes
    ax.set_xlim(-0.5, max(len(d["batch"]) - 0.5, 0.5))
    if artists.get("drift") is not None:
        artists["drift"].set_data(d["batch"], d["drift"])
        _drift_limits(artists["drift"].axes, d["drift"])
    ax.set_title(f"{result.totals['n']} samples: agreement {result.agreement:.3f}, {len(result.alerts)} alert(s)")
    ax.figure.canvas.draw_idle()
