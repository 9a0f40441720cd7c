"""viz/_common.py (shared text colours and note placement): text follows light and dark styles; plots draw into the
axes of a matplotlib SubFigure."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest

import workbench as wb
import workbench.viz as viz

from .conftest import save

pytestmark = pytest.mark.usefixtures("no_figure_leaks")


@pytest.mark.parametrize("style", ["default", "dark_background"])
def test_text_follows_light_and_dark_styles(style, synth):
    n, r = synth
    with plt.style.context(style):
        fig, axes = plt.subplots(2, 3, figsize=(18, 12 if n > 30 else 8), layout="constrained")
        viz.plot_sensitivity(r["sens"], axes[0, 0])
        viz.plot_entropy(r["ent"], axes[0, 1])
        viz.plot_connectivity(r["conn"], axes[0, 2])
        viz.plot_profile(r["prof"], axes[1, 0])
        viz.plot_allocation(r["alloc"], axes[1, 1])
        viz.plot_paths(r["paths"], axes[1, 2])
        background = matplotlib.colors.to_rgb(plt.rcParams["axes.facecolor"])
        for ax in axes.flat[1:]:  # notes beside bars sit on the background: never the background's colour
            for t in ax.texts:
                assert matplotlib.colors.to_rgb(t.get_color()) != background, (ax.get_title(), t.get_text())
        save(fig, f"all_{style}_{n}rows")


def test_plots_draw_into_axes_of_a_subfigure():
    """Axes inside a matplotlib SubFigure (whose size lives on the root figure) work like any other."""
    import matplotlib.pyplot as plt

    model, data = wb.demo.load("digits-cnn")
    bench = wb.Workbench(model, data)
    fig = plt.figure(figsize=(8, 3))
    left, right = fig.subfigures(1, 2)
    ax_l, ax_r = left.subplots(), right.subplots()
    paths, ent = bench.paths(), bench.entropy()
    now, dense = wb.viz.plot_paths(paths, ax_l)
    bars = wb.viz.plot_entropy(ent, ax=ax_r)
    assert now.axes is ax_l and dense.axes is ax_l and len(now.get_xdata()) == len(paths.log10_paths)
    assert all(b.axes is ax_r for b in bars) and len(bars) == len(ent.layers)
    fig.canvas.draw()  # the notes placed from the root figure's size lay out inside the subfigure
    assert ax_r.bbox.x0 >= right.bbox.x0 - 1 and ax_r.bbox.x1 <= right.bbox.x1 + 1
    plt.close(fig)
