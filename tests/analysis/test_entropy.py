import math

import numpy as np
import pytest
import torch
from conftest import assert_bitwise, assert_plain, snapshot
from torch import nn
from zoo import ZOO, make

import workbench as wb
from workbench.activations import histogram_entropy
from workbench.errors import CriterionError, DataError


def test_histogram_entropy_known_values():
    uniform = torch.arange(32, dtype=torch.float64)[:, None]  # one sample per bin: log2(32) = 5 bits
    h, dead = histogram_entropy(uniform, bins=32)
    assert h.item() == pytest.approx(5.0) and not dead.item()
    two = torch.tensor([[0.0], [0.0], [1.0], [1.0]])
    assert histogram_entropy(two, bins=8)[0].item() == pytest.approx(1.0)
    h, dead = histogram_entropy(torch.full((10, 1), 3.0))
    assert h.item() == 0.0 and dead.item()


class Toy(nn.Module):
    """fc's unit 0 is dead (weights and bias zero -> constant 0 after ReLU), unit 1 barely varies."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.out = nn.Linear(3, 2)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[0.0, 0, 0, 0], [1e-3, 0, 0, 0], [1.0, -1.0, 0.5, 2.0]]))
            self.fc.bias.copy_(torch.tensor([0.0, 0.5, 0.0]))

    def forward(self, x):
        return self.out(torch.relu(self.fc(x)))


def toy_bench():
    torch.manual_seed(0)
    x = torch.randn(128, 4)
    data = [(x[:64], torch.randint(0, 2, (64,))), (x[64:], torch.randint(0, 2, (64,)))]
    return wb.Workbench(Toy(), data)


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


def test_entropy_and_apoz_criteria_rank_units_as_the_papers_say():
    bench = toy_bench()
    bench.apply(wb.Plan({"fc": wb.LayerPlan(0.34, "neuron", "entropy")}), evaluate=False)
    pruned = bench.store.current("fc.weight").all(1)
    assert pruned.tolist() == [True, False, False]
    bench.undo()
    # APoZ: unit 0 is always zero after ReLU (APoZ 1), unit 1 never (bias 0.5): unit 0 goes first
    bench.apply(wb.Plan({"fc": wb.LayerPlan(0.34, "neuron", "apoz")}), evaluate=False)
    assert bench.store.current("fc.weight").all(1).tolist() == [True, False, False]


def test_unit_criteria_need_data_and_unit_shaped_layers():
    model, data = make("lstm")
    bench = wb.Workbench(model, data)
    with pytest.raises(CriterionError, match=r"'entropy'.*'lstm'.*linear/conv"):
        bench.apply(wb.Plan({"lstm": wb.LayerPlan(0.5, "weight", "entropy")}))
    nodata = wb.Workbench(make("rescat")[0])
    with pytest.raises(CriterionError, match="needs calibration data"):
        nodata.apply(wb.Plan.uniform(0.5, criterion="apoz"))


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
