"""Information views: per-unit activation entropy on calibration data and per-layer weight entropy.

Activation entropy of a unit (Luo & Wu 2017): its pooled activation (mean over positions) is histogrammed
over the calibration samples into a fixed number of bins spanning its own range, and the entropy of that
histogram is taken in bits. A unit whose activation never changes has entropy 0 and is reported as dead;
a layer whose units are all dead "never activates" on this data, which is reported, not divided by.
Weight entropy: the entropy of a layer's weight histogram (fixed bins over its range), in bits.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..activations import histogram_entropy, unit_stats
from ..errors import DataError
from ..state import as_state

__all__ = ["EntropyResult", "entropy"]


@dataclass(frozen=True)
class EntropyResult:
    """`units[i]`: activation entropy (bits) of each unit of `layers[i]`; `dead[i]` constant units;
    `mean[i]` the layer mean; `weight[i]` weight entropy (bits); `notes` layers that never activate."""

    layers: tuple[str, ...]
    units: tuple[np.ndarray, ...]
    dead: tuple[np.ndarray, ...]
    mean: np.ndarray
    weight: np.ndarray
    bins: int
    n: int
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def max_bits(self) -> float:
        return math.log2(self.bins)

    def to_dict(self) -> dict[str, Any]:
        return {
            "layers": list(self.layers),
            "units": [u.tolist() for u in self.units],
            "dead": [d.tolist() for d in self.dead],
            "mean": self.mean.tolist(),
            "weight": self.weight.tolist(),
            "bins": self.bins,
            "n": self.n,
            "notes": dict(self.notes),
        }

    def to_pandas(self):
        import pandas as pd

        return pd.DataFrame(
            {
                "layer": self.layers,
                "mean_bits": self.mean,
                "weight_bits": self.weight,
                "dead_units": [int(d.sum()) for d in self.dead],
                "units": [len(u) for u in self.units],
            }
        )


def entropy(
    state, *, layers: Sequence[str] | None = None, data: Iterable | None = None, bins: int = 32
) -> EntropyResult:
    """Per-unit and per-layer activation entropy on `data` (default `bench.calib`), and weight entropy.
    The model is run in eval mode without gradients; nothing on it changes."""
    state = as_state(state)
    from ..masks.select import DEFAULT_KINDS

    if bins < 2:
        raise DataError(f"entropy needs at least 2 histogram bins, got {bins}")
    data = data if data is not None else state.calib
    if data is None:
        raise DataError("entropy needs calibration data: pass data= or create the Workbench with data")
    names = (
        [state.targets[n].name for n in layers]
        if layers is not None
        else [t.name for t in state.targets if t.kind in DEFAULT_KINDS and not t.tied_to]
    )
    stats = unit_stats(state.model, data, names)
    if stats.n == 0:
        raise DataError("entropy: the data yielded no samples")
    out_layers, units, deads, means, weights, notes = [], [], [], [], [], {}
    for name in names:
        pooled = stats.pooled.get(name)
        t = state.targets[name]
        with torch.no_grad():
            w = torch.cat([state.model.get_parameter(p).detach().reshape(-1, 1) for p in t.param_names()])
            wh, _ = histogram_entropy(w, bins)
        if pooled is None:
            notes[name] = "no activations recorded: the layer's module is not called directly by the model"
            continue
        h, dead = histogram_entropy(pooled, bins)
        if bool(dead.all()):
            notes[name] = f"never activates on this data: all {len(dead)} units are constant (entropy 0)"
        out_layers.append(name)
        units.append(h.numpy())
        deads.append(dead.numpy())
        means.append(float(h.mean()))
        weights.append(float(wh[0]))
    return EntropyResult(
        tuple(out_layers), tuple(units), tuple(deads), np.array(means), np.array(weights), bins, stats.n, notes
    )
