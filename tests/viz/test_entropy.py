"""viz/entropy.py: entropy bars per layer with notes for dead units, and one layer's units with the dead ones red."""

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
