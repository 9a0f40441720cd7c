"""viz/sensitivity.py: the heatmap holds the scan's values (NaN cells masked and hatched), reads at 12 and 60 rows,
labels coupled rows, updates in place, and its title gives the trust and the exact cells."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.image import AxesImage

import workbench as wb
import workbench.viz as viz
from workbench.analysis.sensitivity import SensitivityResult

from .conftest import labels, save

pytestmark = pytest.mark.usefixtures("no_figure_leaks")


def check_heatmap(im, sens):
    assert isinstance(im, AxesImage)
    arr = im.get_array()
    nan = np.isnan(sens.values)
    assert np.array_equal(np.ma.getmaskarray(arr), nan)
    np.testing.assert_array_equal(arr.filled(0)[~nan], sens.values[~nan])


@pytest.mark.parametrize("key", ["sens", "est"])
def test_sensitivity_heatmap_of_a_real_scan(real, key):
    sens = real[key]
    fig, ax = plt.subplots(figsize=(5, 3))
    im = viz.plot_sensitivity(sens, ax=ax)
    check_heatmap(im, sens)
    assert labels(ax) == list(sens.layers)
    assert labels(ax, "x") == ["30%", "60%"]
    assert im.colorbar.ax.get_ylabel() == sens.units
    assert sens.mode in ax.get_title() and "filter / l1" in ax.get_title()
    # damage is red: for accuracy the lowest value, for loss the highest, maps to the red end
    worst = np.nanmin(sens.values) if sens.higher_is_better else np.nanmax(sens.values)
    r, g, b, _ = im.cmap(im.norm(worst))
    damage = worst < 0 if sens.higher_is_better else worst > 0
    # (a first-order estimate at a trained minimum can predict no damage anywhere: then nothing is red)
    assert (r > b and r > g) if damage else b >= r
    texts = [t for t in ax.texts]
    assert len(texts) == sens.values.size  # few cells: values written in them
    for t in texts:  # each in a colour that contrasts with its cell
        i, j = (round(v) for v in t.get_position())
        cell = np.array(im.cmap(im.norm(sens.values[j, i]))[:3])
        lum = 0.299 * cell[0] + 0.587 * cell[1] + 0.114 * cell[2]
        assert t.get_color() == ("black" if lum > 0.5 else "white")
    save(fig, f"sensitivity_real_{key}")


def test_sensitivity_heatmap_of_many_rows(synth):
    n, r = synth
    sens = r["sens"]
    fig, ax = plt.subplots(figsize=(6, 7))
    im = viz.plot_sensitivity(sens, ax=ax)
    check_heatmap(im, sens)
    shown = labels(ax)
    assert len(shown) <= 30 and shown[0] == "blocks.0.conv0 (+2)"
    assert len(shown) == n if n <= 30 else len(shown) >= n // 3
    assert "interrupted" in ax.get_title()
    assert len(ax.collections) == 1  # the hatching of the NaN cells
    assert len(ax.texts) == (np.isfinite(sens.values).sum() if n <= 20 else 0)
    save(fig, f"sensitivity_{n}rows")


def test_coupled_rows_of_a_real_scan_are_labelled_with_their_members():
    from zoo import make

    model, data = make("rescat")
    sens = wb.Workbench(model, data).sensitivity((0.5,), granularity="filter", criterion="l1", progress=False)
    assert any(len(m) > 1 for m in sens.members)
    fig, ax = plt.subplots(figsize=(5, 3))
    im = viz.plot_sensitivity(sens, ax=ax)
    check_heatmap(im, sens)
    expected = [f"{r} (+{len(m) - 1})" if len(m) > 1 else r for r, m in zip(sens.layers, sens.members)]
    assert labels(ax) == expected and ax.get_ylabel() == "coupled group"
    save(fig, "sensitivity_coupled_rescat")


def test_update_sensitivity_in_place(synth):
    n, r = synth
    full = r["sens"]
    partial = SensitivityResult(**{**full.__dict__, "values": np.where(np.arange(n)[:, None] < 3, full.values, np.nan)})
    fig, ax = plt.subplots(figsize=(6, 7))
    im = viz.plot_sensitivity(partial, ax=ax, annotate=True)
    figs, texts = plt.get_fignums(), len(ax.texts)
    done = SensitivityResult(**{**full.__dict__, "values": np.nan_to_num(full.values, nan=-0.5)})
    assert viz.update_sensitivity(im, done) is im
    assert plt.get_fignums() == figs and list(ax.images) == [im]
    check_heatmap(im, done)
    assert im.norm.halfrange == pytest.approx(np.abs(done.values).max())
    assert len(ax.collections) == 0 and len(ax.texts) == done.values.size > texts
    assert "interrupted" not in ax.get_title()
    with pytest.raises(ValueError, match="shape"):
        viz.update_sensitivity(im, SensitivityResult(**{**done.__dict__, "values": done.values[:, :2]}))
    save(fig, f"sensitivity_updated_{n}rows")


def test_sensitivity_title_gives_the_trust_and_refine_marks_exact_cells():
    from workbench.demo import load

    model, data = load("digits-mlp")
    bench = wb.Workbench(model, data)
    est = bench.sensitivity((0.3, 0.6, 0.9), mode="estimate", progress=False)
    fig, ax = plt.subplots()
    viz.plot_sensitivity(est, ax=ax)
    assert f"trust {est.trust:.2f}: {len(est.checks)} cells checked" in ax.get_title()
    assert not [line for line in ax.lines if line.get_gid() == "exact-cells"]
    plt.close(fig)
    maps = []
    bench.sensitivity((0.3, 0.6, 0.9), mode="refine", on_update=maps.append, progress=False)
    fig, ax = plt.subplots()
    im = viz.plot_sensitivity(maps[0], ax=ax)
    for m in (maps[0], maps[len(maps) // 2], maps[-1]):  # the heatmap filling in, one image updated in place
        viz.update_sensitivity(im, m)
        n = int(m.exact.sum())
        assert f"{n}/{m.exact.size} cells exact" in ax.get_title()
        (dots,) = [line for line in ax.lines if line.get_gid() == "exact-cells"]
        got = {(round(y + 0.28), round(x + 0.32)) for x, y in zip(dots.get_xdata(), dots.get_ydata())}
        assert got == {(int(i), int(j)) for i, j in np.argwhere(m.exact)}
    save(fig, "sensitivity_refine_marks")
