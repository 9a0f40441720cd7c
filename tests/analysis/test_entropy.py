"""analysis/entropy.py: per-unit activation entropy finds dead units and layers that never activate, runs on every
test architecture and demo model leaving no trace, and refuses bad input."""

import math

import numpy as np
import pytest
import torch
from conftest import assert_bitwise, assert_plain, snapshot
from zoo import ZOO, make
from zoo.units import toy_bench

import workbench as wb
from workbench.errors import DataError


def test_entropy_finds_the_dead_unit_and_reports_layers_that_never_activate():
    bench = toy_bench()
    ent = bench.entropy()
    i = ent.layers.index("fc")
    assert ent.units[i][0] == 0.0 and ent.dead[i][0] and not ent.dead[i][2]
    assert ent.units[i][2] > 3.0  # a unit spread over the bins
    assert ent.n == 128 and ent.max_bits == 5.0
    with torch.no_grad():
        bench.model.fc.weight.zero_()
        bench.model.fc.bias.zero_()
    ent = bench.entropy()
    assert "never activates" in ent.notes["fc"]
    assert np.all(ent.units[ent.layers.index("fc")] == 0)


@pytest.mark.parametrize("name", ZOO)
def test_entropy_runs_everywhere_and_leaves_no_trace(name):
    import warnings

    model, data = make(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bench = wb.Workbench(model, data)
    snap = snapshot(model)
    ent = bench.entropy(bins=16)
    assert len(ent.layers) == len(ent.units) == len(ent.mean) and all(0 <= m <= 4 for m in ent.mean)
    assert np.all(ent.weight > 0)
    assert_bitwise(model, snap)
    assert_plain(model)


def test_entropy_bad_input():
    bench = toy_bench()
    with pytest.raises(DataError, match="bins"):
        bench.entropy(bins=1)
    with pytest.raises(DataError, match="no samples"):
        bench.entropy(data=[])


def test_entropy_on_every_demo_model(demo_models):
    for name, (model, data) in demo_models.items():
        bench = wb.Workbench(model, data)
        ent = bench.entropy()
        assert len(ent.layers) >= 2, name
        assert all(math.isfinite(m) for m in ent.mean), name
