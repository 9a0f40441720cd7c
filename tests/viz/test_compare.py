"""viz/compare.py: the old name of workbench.viz.pareto stays importable and is the same function."""

from workbench.viz import pareto
from workbench.viz.compare import plot_pareto


def test_the_old_module_name_gives_the_same_plot_function():
    assert plot_pareto is pareto.plot_pareto
