"""The interactive dashboard (ipywidgets). Imported lazily by `Workbench.show()`: the core never needs it."""

from ._base import Panel
from .dashboard import Dashboard, panels, register_panel

__all__ = ["Dashboard", "Panel", "panels", "register_panel"]
