"""What the dashboard remembers per bench, kept here in the UI rather than on the `Workbench`: the plain data its
panels restore when it is opened again (`ui_state`), and the dashboard `Workbench.show()` returns (`dashboard_of`).

Both are keyed weakly by the bench. A remembered dashboard refers to its bench, so that entry lasts as long as the
dashboard's widgets do (ipywidgets keeps every open widget, with the callbacks that reach the dashboard).
"""

from __future__ import annotations

import weakref
from typing import Any

__all__ = ["dashboard_of", "ui_state"]

_STATE: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()
_DASHBOARDS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def ui_state(bench) -> dict[str, Any]:
    """The plain data the dashboards of `bench` keep across re-opening (e.g. ``"plan"``: the edited plan's dict)."""
    return _STATE.setdefault(bench, {})


def dashboard_of(bench, *, new: bool = False, **kwargs: Any):
    """The dashboard of `bench`: the one shown last, or a fresh one (``new=True``, or none yet) built with `kwargs`."""
    from .dashboard import Dashboard

    if new or bench not in _DASHBOARDS:
        _DASHBOARDS[bench] = Dashboard(bench, **kwargs)
    return _DASHBOARDS[bench]
