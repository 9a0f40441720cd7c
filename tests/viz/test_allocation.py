"""viz/allocation.py: one bar per allocated row at its ratio, the budget met in the title."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.container import BarContainer

import workbench.viz as viz

from .conftest import labels, save

pytestmark = pytest.mark.usefixtures("no_figure_leaks")


def test_allocation_bars(results):
    source, r = results
    alloc = r["alloc"]
    fig, ax = plt.subplots(figsize=(7, 6 if len(alloc.rows) > 30 else 3))
    bars = viz.plot_allocation(alloc, ax=ax)
    assert isinstance(bars, BarContainer)
    np.testing.assert_allclose([b.get_width() for b in bars], alloc.ratios)
    assert f"{alloc.achieved:.1%}" in ax.get_title() and alloc.target in ax.get_title()
    assert len(ax.texts) == len(alloc.rows) and len(labels(ax)) <= 30
    save(fig, f"allocation_{source}")
