"""viz/connectivity.py: the connection matrix (pruned cells masked, dead units marked), a before/after pair on one
scale, and path counts now vs dense."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.image import AxesImage
from matplotlib.lines import Line2D

import workbench.viz as viz
from workbench.analysis.connectivity import ConnectivityResult

from .conftest import labels, save

pytestmark = pytest.mark.usefixtures("no_figure_leaks")


def test_connectivity_matrix(results):
    source, r = results
    conn = r["conn"]
    fig, ax = plt.subplots(figsize=(5, 4))
    im = viz.plot_connectivity(conn, ax=ax)
    assert isinstance(im, AxesImage)
    arr = im.get_array()
    assert np.array_equal(np.ma.getmaskarray(arr), conn.weight <= 0)
    assert conn.pruned[np.ma.getmaskarray(arr)].all() or (conn.before[np.ma.getmaskarray(arr)] == 0).any()
    np.testing.assert_array_equal(arr.compressed(), conn.weight[conn.weight > 0])
    assert isinstance(im.norm, matplotlib.colors.LogNorm)
    marks = [line for line in ax.lines if line.get_marker() in (">", "v")]
    assert sum(len(m.get_xdata()) for m in marks) == conn.dead_out.sum() + conn.dead_in.sum()
    with pytest.raises(ValueError, match="which"):
        viz.plot_connectivity(conn, ax=ax, which="during")
    save(fig, f"connectivity_{source}")


def test_connectivity_pair_shares_one_scale(results):
    source, r = results
    conn = r["conn"]
    before, after = viz.plot_connectivity_pair(conn)
    assert len(plt.get_fignums()) == 1 and before.axes.figure is after.axes.figure
    assert before.norm.vmin == after.norm.vmin and before.norm.vmax == after.norm.vmax
    np.testing.assert_array_equal(before.get_array().compressed(), conn.before[conn.before > 0])
    assert before.norm.vmax == conn.before.max()
    save(before.axes.figure, f"connectivity_pair_{source}")
    fig, axes = plt.subplots(1, 2)
    viz.plot_connectivity_pair(conn, axes)
    assert plt.get_fignums() == [before.axes.figure.number, fig.number]


def test_connectivity_of_a_dense_layer_has_nothing_masked_and_no_key():
    before = np.random.default_rng(0).uniform(0.1, 1.0, (8, 4))
    none = np.zeros(8, bool)
    conn = ConnectivityResult("fc", before, before, np.zeros_like(before, bool), none, none[:4])
    _, ax = plt.subplots()
    im = viz.plot_connectivity(conn, ax=ax)
    assert not np.ma.getmaskarray(im.get_array()).any() and ax.get_legend() is None
    assert "100% of connections left" in ax.get_title()


def test_path_counts(results):
    source, r = results
    p = r["paths"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    now, dense = viz.plot_paths(p, ax=ax)
    assert isinstance(now, Line2D) and isinstance(dense, Line2D)
    np.testing.assert_allclose(now.get_ydata(), p.log10_paths)
    np.testing.assert_allclose(dense.get_ydata(), p.log10_paths_dense)
    assert len(labels(ax, "x")) <= 30
    assert ("stopped at" in ax.get_title()) == bool(p.stopped)
    save(fig, f"paths_{source}")
