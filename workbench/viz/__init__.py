"""Matplotlib views of the workbench's results. Every function takes a result and an optional axis,
`plot_x(result, ax=None, **style) -> artist`, draws on `ax` (default: the current axes), never calls
`plt.show()` and never makes a figure when given an axis (`plot_connectivity_pair` makes a 1 x 2 figure only when
given no axes). Live views redraw in place (`update_sensitivity`: `set_data` + `draw_idle`).

`import workbench` does not import matplotlib; `import workbench.viz` does.

>>> import matplotlib
>>> matplotlib.use("Agg")
>>> import workbench.viz as viz
>>> sorted(n for n in viz.__all__ if n.startswith("plot_"))[:3]
['plot_allocation', 'plot_attribution_similarity', 'plot_attributions']
"""

from .allocation import plot_allocation
from .connectivity import connectivity_norm, plot_connectivity, plot_connectivity_pair, plot_paths
from .effects import (
    plot_attribution_similarity,
    plot_attributions,
    plot_bias,
    plot_bias_curve,
    plot_confusion_delta,
    plot_exemplars,
    plot_per_class,
    plot_robustness,
)
from .entropy import plot_entropy, plot_unit_entropy
from .monitor import plot_monitor, update_monitor
from .pareto import plot_pareto
from .profile import plot_profile
from .sensitivity import plot_sensitivity, update_sensitivity

__all__ = [
    "connectivity_norm",
    "plot_allocation",
    "plot_attribution_similarity",
    "plot_attributions",
    "plot_bias",
    "plot_bias_curve",
    "plot_confusion_delta",
    "plot_connectivity",
    "plot_connectivity_pair",
    "plot_entropy",
    "plot_exemplars",
    "plot_monitor",
    "plot_pareto",
    "plot_paths",
    "plot_per_class",
    "plot_profile",
    "plot_robustness",
    "plot_sensitivity",
    "plot_unit_entropy",
    "update_monitor",
    "update_sensitivity",
]
