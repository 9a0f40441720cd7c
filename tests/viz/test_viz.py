"""workbench.viz draws what the results hold, on the axis it is given, readable at 12 and 60 rows, light and dark.

Real results come from the digits CNN (computed once per module); synthetic ones have 12 or 60 rows. Each test
saves its figure as a PNG under tests/artifacts/viz/ (git-ignored) for a person to look at.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.container import BarContainer
from matplotlib.image import AxesImage
from matplotlib.lines import Line2D

import workbench as wb
import workbench.viz as viz
from workbench.analysis.allocate import Allocation
from workbench.analysis.connectivity import ConnectivityResult, PathResult
from workbench.analysis.entropy import EntropyResult
from workbench.analysis.profile import ProfileResult
from workbench.analysis.sensitivity import SensitivityResult
from workbench.plan import Plan

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "viz"
SIZES = (12, 60)


@pytest.fixture(autouse=True)
def no_figure_leaks():
    plt.close("all")
    yield
    plt.close("all")


def save(fig, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    fig.savefig(ARTIFACTS / f"{name}.png", dpi=70 if name.startswith("all_") else 90, bbox_inches="tight")


def labels(ax, axis: str = "y") -> list[str]:
    ticks = ax.get_yticklabels() if axis == "y" else ax.get_xticklabels()
    return [t.get_text() for t in ticks if t.get_text()]


# ---------------------------------------------------------------- results


@pytest.fixture(scope="module")
def real():
    """Sensitivity and allocation on the dense digits CNN; the other analyses after a filter + global step."""
    model, data = wb.demo.load("digits-cnn")
    bench = wb.Workbench(model, data.val, metric="accuracy")
    out = {
        "sens": bench.sensitivity((0.3, 0.6), granularity="filter", criterion="l1", progress=False),
        "est": bench.sensitivity((0.3, 0.6), granularity="filter", criterion="l1", mode="estimate", progress=False),
    }
    bench.allocate(0.4, target="flops", ratios=(0.3, 0.6))
    out["alloc"] = bench.last_allocation
    bench.apply(wb.Plan.uniform(0.5, granularity="filter", criterion="l1"))
    bench.apply(wb.Plan.global_(0.8))
    out.update(
        ent=bench.entropy(),
        conn=bench.connectivity("features.3"),
        paths=bench.paths(),
        prof=bench.profile(repeats=1),
    )
    bench.reset()
    return out


def synthetic(n: int, seed: int = 0) -> dict:
    """Results of every kind with `n` rows: NaN cells, coupled rows, dead units, a stopped path count."""
    rng = np.random.default_rng(seed)
    layers = tuple(f"blocks.{i // 3}.conv{i % 3}" for i in range(n))
    members = tuple((name, f"{name}.bn", "head") if i % 7 == 0 else (name,) for i, name in enumerate(layers))
    ratios = np.linspace(0.1, 0.9, 9)
    values = -np.cumsum(rng.uniform(0, 0.05, (n, 9)), axis=1) + rng.normal(0, 0.01, (n, 9))
    values[n // 2 :, 6:] = np.nan  # interrupted scan
    sens = SensitivityResult(layers, members, ratios, values, 0.97, "accuracy", True, "filter", "l1", "exact")
    units = tuple(rng.uniform(0, 5, 16 + i % 5) for i in range(n))
    dead = tuple(rng.uniform(size=len(u)) < 0.1 for u in units)
    units = tuple(np.where(d, 0.0, u) for u, d in zip(units, dead))
    ent = EntropyResult(
        layers,
        units,
        dead,
        np.array([u.mean() for u in units]),
        rng.uniform(3, 5, n),
        32,
        500,
    )
    before = rng.uniform(0.01, 2.0, (64, 48)) ** 2
    weight = np.where(rng.uniform(size=before.shape) < 0.6, 0.0, before)
    weight[[3, 17, 40]] = 0.0
    weight[:, [5, 6]] = 0.0
    alive = weight != 0
    conn = ConnectivityResult(
        "blocks.3.conv1", weight, before, (weight == 0) & (before != 0), ~alive.any(1), ~alive.any(0)
    )
    dense_paths = np.cumsum(rng.uniform(0.5, 2.0, n))
    now_paths = dense_paths - np.cumsum(rng.uniform(0, 0.3, n))
    paths = PathResult(layers, now_paths, dense_paths, stopped=f"{layers[-1]}.custom_op")
    params = rng.integers(100, 100_000, n)
    nonzeros = (params * rng.uniform(0.1, 1.0, n)).astype(int)
    flops = params * rng.integers(1, 200, n).astype(float)
    prof = ProfileResult(
        layers,
        ("conv",) * n,
        params,
        nonzeros,
        flops,
        flops * nonzeros / params,
        rng.uniform(0.01, 2.0, n),
        params * 4,
        params * 4,
        int(flops.sum() * 1.1),
        int((flops * nonzeros / params).sum()),
        float(rng.uniform(5, 20)),
        int(params.sum()),
        64,
        "cpu",
        5,
    )
    chosen = rng.uniform(0, 0.9, n)
    removed = chosen * flops
    alloc = Allocation(
        Plan({}), layers, chosen, removed, rng.uniform(0, 0.05, n), float(flops.sum()), "flops", 0.5, removed.sum()
    )
    return {"sens": sens, "ent": ent, "conn": conn, "paths": paths, "prof": prof, "alloc": alloc}


@pytest.fixture(scope="module", params=SIZES, ids=[f"{n}rows" for n in SIZES])
def synth(request):
    return request.param, synthetic(request.param)


@pytest.fixture(scope="module", params=["real", *SIZES], ids=["real", *(f"{n}rows" for n in SIZES)])
def results(request):
    """(name, results): the digits CNN's, then the synthetic ones."""
    if request.param == "real":
        return "real", request.getfixturevalue("real")
    return f"synth{request.param}", synthetic(request.param)


# ---------------------------------------------------------------- contract


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


# ---------------------------------------------------------------- sensitivity


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


# ---------------------------------------------------------------- entropy


def test_entropy_bars(results):
    source, r = results
    ent = r["ent"]
    n = len(ent.layers)
    fig, ax = plt.subplots(figsize=(6, 6 if n > 30 else 3.5))
    bars = viz.plot_entropy(ent, ax=ax)
    assert isinstance(bars, BarContainer) and len(bars) == n
    np.testing.assert_allclose([b.get_width() for b in bars], ent.mean)
    np.testing.assert_allclose(ax.collections[0].get_offsets()[:, 0], ent.weight)
    assert any(line.get_xdata()[0] == pytest.approx(ent.max_bits) for line in ax.lines)
    notes = [t.get_text() for t in ax.texts]
    with_dead = sum(bool(d.any()) for d in ent.dead)
    assert len(notes) == (with_dead + 1 if with_dead else 0)  # one per layer with dead units, and the header
    assert len(labels(ax)) <= 30
    save(fig, f"entropy_{source}")


def test_unit_entropy_highlights_dead_units(synth):
    ent = synth[1]["ent"]
    i = next(k for k, d in enumerate(ent.dead) if d.any())
    fig, ax = plt.subplots(figsize=(6, 3))
    bars = viz.plot_unit_entropy(ent, ent.layers[i], ax=ax)
    np.testing.assert_allclose([b.get_height() for b in bars], ent.units[i])
    red = [k for k, b in enumerate(bars) if b.get_facecolor() == matplotlib.colors.to_rgba("tab:red")]
    assert red == list(np.flatnonzero(ent.dead[i]))
    with pytest.raises(KeyError, match="not in this result"):
        viz.plot_unit_entropy(ent, "nope", ax=ax)
    save(fig, "unit_entropy")


# ---------------------------------------------------------------- connectivity and paths


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


# ---------------------------------------------------------------- profile and allocation


@pytest.mark.parametrize("metric", ["flops", "latency", "params"])
def test_profile_bars(metric, results):
    source, r = results
    prof = r["prof"]
    fig, ax = plt.subplots(figsize=(6, 6 if len(prof.layers) > 30 else 3.5))
    bars = viz.plot_profile(prof, ax=ax, metric=metric)
    assert isinstance(bars, BarContainer)
    expected = {
        "flops": prof.flops_effective / 1e6,
        "latency": prof.latency_ms,
        "params": prof.nonzeros,
    }[metric]
    np.testing.assert_allclose([b.get_width() for b in bars], expected)
    assert {"flops": "MFLOPs", "latency": "ms", "params": "count"}[metric] in ax.get_xlabel()
    assert len(labels(ax)) <= 30
    save(fig, f"profile_{metric}_{source}")


def test_profile_latency_not_measured_per_layer(synth):
    prof = synth[1]["prof"]
    prof = ProfileResult(**{**prof.__dict__, "latency_ms": np.full(len(prof.layers), np.nan)})
    _, ax = plt.subplots()
    bars = viz.plot_profile(prof, ax=ax, metric="latency")
    assert [b.get_width() for b in bars] == [0.0] * len(prof.layers) and "not measured" in ax.get_title()


def test_profile_rejects_an_unknown_metric(real):
    with pytest.raises(ValueError, match="metric must be one of"):
        viz.plot_profile(real["prof"], metric="energy")


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


# ---------------------------------------------------------------- styles


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
