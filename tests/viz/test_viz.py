"""workbench.viz as a whole: importing workbench does not import matplotlib, and every plot function draws on the
axis it is given (or the current one) without opening a figure. Each plot module has its own test file beside this
one; the results they draw come from tests/viz/conftest.py.
"""

from __future__ import annotations

import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
from matplotlib.container import BarContainer

import workbench.viz as viz

pytestmark = pytest.mark.usefixtures("no_figure_leaks")


def test_import_workbench_does_not_import_matplotlib():
    code = "import sys, workbench; print(any(m.split('.')[0] == 'matplotlib' for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


CALLS = {
    "sensitivity": lambda r, ax: viz.plot_sensitivity(r["sens"], ax),
    "entropy": lambda r, ax: viz.plot_entropy(r["ent"], ax),
    "unit_entropy": lambda r, ax: viz.plot_unit_entropy(r["ent"], 1, ax),
    "connectivity": lambda r, ax: viz.plot_connectivity(r["conn"], ax),
    "connectivity_before": lambda r, ax: viz.plot_connectivity(r["conn"], ax, which="before"),
    "paths": lambda r, ax: viz.plot_paths(r["paths"], ax),
    "profile": lambda r, ax: viz.plot_profile(r["prof"], ax),
    "allocation": lambda r, ax: viz.plot_allocation(r["alloc"], ax),
}


@pytest.mark.parametrize("name", list(CALLS))
def test_draws_into_the_given_axis_without_a_new_figure(name, results):
    _, ax = plt.subplots()
    before = plt.get_fignums()
    artist = CALLS[name](results[1], ax)
    assert plt.get_fignums() == before
    first = artist[0] if isinstance(artist, (list, BarContainer)) else artist
    assert first.axes is ax


@pytest.mark.parametrize("name", list(CALLS))
def test_default_axis_is_the_current_one(name, results):
    fig, ax = plt.subplots()
    artist = CALLS[name](results[1], None)
    first = artist[0] if isinstance(artist, (list, BarContainer)) else artist
    assert first.axes is ax and plt.get_fignums() == [fig.number]
