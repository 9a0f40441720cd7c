"""viz/profile.py: per-layer FLOPs, latency or parameter bars, latency not measured per layer, unknown metrics."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.container import BarContainer

import workbench.viz as viz
from workbench.analysis.profile import ProfileResult

from .conftest import labels, save

pytestmark = pytest.mark.usefixtures("no_figure_leaks")


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
