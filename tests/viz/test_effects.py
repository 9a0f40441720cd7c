"""Plots of the effects of pruning (workbench/viz/effects.py): artists on the given axes, readable PNGs."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.image import AxesImage

import workbench.viz as viz
from workbench.analysis.attributions import AttributionResult, similarity
from workbench.analysis.bias import BiasResult
from workbench.analysis.robustness import RobustnessResult

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "effects"


def attribution(kind="image", n=5):
    r = np.random.default_rng(0)
    shape = {"image": (1, 8, 8), "sequence": (6, 8), "tokens": (5,)}[kind]
    a = r.normal(size=(n, *shape))
    b = a + r.normal(scale=0.5, size=a.shape)
    s = similarity(a.reshape(n, -1), b.reshape(n, -1))
    x = r.integers(0, 9, (n, *shape)) if kind == "tokens" else r.random((n, *shape))
    labels = r.integers(0, 10, n)
    after = labels.copy()
    after[0] = (after[0] + 1) % 10
    return AttributionResult(
        "integrated_gradients",
        "dense",
        0,
        1,
        "dense",
        "step 1",
        kind,
        x,
        labels,
        labels,
        labels,
        after,
        a,
        b,
        s["spearman"],
        s["cosine"],
        s["topk"],
    )


def robustness():
    eps = np.array([0.0, 0.05, 0.1, 0.2])
    acc = np.array(
        [
            [[0.99, 0.9, 0.6, 0.1], [0.99, 0.85, 0.4, 0.0], [0.99, 0.99, 0.98, 0.9]],
            [[0.95, 0.5, 0.25, 0.05], [0.95, 0.45, 0.2, 0.0], [0.95, 0.93, 0.9, 0.7]],
        ]
    )
    return RobustnessResult(
        ("fgsm", "pgd", "noise"), eps, 0, 1, "dense", "step 1", acc, 1 - acc, acc[:, 0, 0], 360, (0.0, 1.0)
    )


def bias(curve=True, k=10):
    r = np.random.default_rng(1)
    cb = np.diag(r.integers(30, 40, k)) + (r.random((k, k)) < 0.05)
    ca = cb.copy()
    ca[3, 3] -= 10
    ca[3, 5] += 10
    counts = cb.sum(1)
    c = np.array([0.3, 0.6, 0.9]) if curve else np.zeros(0)
    ex = r.random((20, 1, 8, 8))
    return BiasResult(
        tuple(str(i) for i in range(k)),
        0,
        1,
        "dense",
        "step 1",
        counts,
        np.diag(cb) / counts,
        np.diag(ca) / counts,
        np.trace(cb) / counts.sum(),
        np.trace(ca) / counts.sum(),
        cb,
        ca,
        np.arange(20),
        ex,
        r.integers(0, k, 20),
        r.integers(0, k, 20),
        r.integers(0, k, 20),
        1.0,
        0.95,
        c,
        c[::-1] if curve else c,
        c[::-1] / 2 if curve else c,
        np.array([3, 3, 5][: len(c)]),
        ("a", "b", "c")[: len(c)],
        12,
        2,
    )


def save(fig, name):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    fig.savefig(ARTIFACTS / f"{name}.png", dpi=96)
    plt.close(fig)


@pytest.mark.parametrize("kind", ["image", "sequence", "tokens"])
def test_attributions_gallery(kind):
    att = attribution(kind)
    fig = plt.figure(figsize=(9, 4.6), layout="constrained")
    artists = viz.plot_attributions(att, fig, samples=4)
    assert plt.get_fignums() == [fig.number]
    if kind == "image":
        assert len(artists) == 12 and all(isinstance(a, AxesImage) for a in artists)
        assert np.nanmax(np.abs(artists[1].get_array())) == pytest.approx(1.0)  # each map scaled to its max
        assert "ρ" in fig.axes[8].get_xlabel()
    else:
        assert len(artists) == 8  # before and after bars per sample
    assert fig.axes[0].title.get_color() != fig.axes[1].title.get_color()  # the flipped sample is marked
    save(fig, f"attributions_{kind}")


def test_single_axis_plots_draw_where_they_are_told():
    for draw in (
        lambda ax: viz.plot_attribution_similarity(attribution(), ax),
        lambda ax: viz.plot_robustness(robustness(), ax),
        lambda ax: viz.plot_per_class(bias(), ax),
        lambda ax: [viz.plot_confusion_delta(bias(), ax)],
        lambda ax: viz.plot_bias_curve(bias(), ax),
    ):
        fig, ax = plt.subplots()
        artists = draw(ax)
        assert plt.get_fignums() == [fig.number]
        first = artists[0][0] if isinstance(artists[0], matplotlib.container.BarContainer) else artists[0]
        assert first.axes is ax
        plt.close(fig)
        fig, ax = plt.subplots()
        assert (draw(None)[0] is not None) and plt.get_fignums() == [fig.number]  # default: the current axes
        plt.close(fig)


def test_robustness_lines_before_dashed_after_solid():
    fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    lines = viz.plot_robustness(robustness(), ax)
    assert len(lines) == 6 and [ln.get_linestyle() for ln in lines[:2]] == ["--", "-"]
    assert lines[3].get_ydata().tolist() == [0.95, 0.45, 0.2, 0.0]
    assert lines[0].get_color() == lines[1].get_color() != lines[2].get_color()
    save(fig, "robustness")


def test_bias_panels_and_gallery():
    b = bias()
    out = viz.plot_bias(b)
    fig = plt.gcf()
    assert len(out) == 3 and len(fig.axes) == 4  # three panels and the confusion colour bar
    ticks = [t.get_color() for t in fig.axes[0].get_xticklabels()]
    assert ticks[3] != ticks[0]  # the most hurt class is marked
    conf = out[1].get_array()
    assert conf[3, 5] > 0 and conf[3, 3] > 0  # more mistakes and fewer correct are both "worse" (red)
    save(fig, "bias")
    fig, axes = plt.subplots(1, 2)
    assert len(viz.plot_bias(bias(curve=False), axes)) == 2
    plt.close(fig)
    fig = plt.figure(figsize=(9.6, 3.2), layout="constrained")
    assert len(viz.plot_exemplars(b, fig, max_items=16)) == 16
    assert "12 right→wrong" in fig._suptitle.get_text()
    save(fig, "exemplars")
