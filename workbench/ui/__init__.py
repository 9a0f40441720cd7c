"""The interactive dashboard (ipywidgets). Imported lazily by `Workbench.show()`: the core never needs it."""

from . import effects as _effects  # noqa: F401  (registers the Interpretability, Robustness and Bias tabs)
from ._base import Panel
from .dashboard import Dashboard, panels, register_panel

__all__ = ["Dashboard", "Panel", "panels", "register_panel"]
