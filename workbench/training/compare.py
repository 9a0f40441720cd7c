"""Old name of `workbench.training.prune_timing` (one module is named `compare`: `workbench.compare`); kept
importable, ``wb.training.compare.METHODS`` included."""

from .prune_timing import METHODS, TimingResult, compare_timing, plot_timing

__all__ = ["METHODS", "TimingResult", "compare_timing", "plot_timing"]
