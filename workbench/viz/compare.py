"""Old name of `workbench.viz.pareto` (one module is named `compare`: `workbench.compare`); kept importable."""

from .pareto import plot_pareto

__all__ = ["plot_pareto"]
