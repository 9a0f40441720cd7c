"""The interactive dashboard (ipywidgets). Imported lazily by `Workbench.show()`: the core never needs it."""

from . import effects as _effects  # noqa: F401  (registers the Interpretability, Robustness and Bias tabs)
from ._base import Panel
from .dashboard import Dashboard, panels, register_panel
from .guide import GuidePanel, guide
from .memory import dashboard_of, ui_state

__all__ = ["Dashboard", "GuidePanel", "Panel", "dashboard_of", "guide", "panels", "register_panel", "ui_state"]
