"""criteria/activation.py: the entropy and APoZ criteria rank units as the papers say, and need calibration data and
unit-shaped layers."""

import pytest
from zoo import make
from zoo.units import toy_bench

import workbench as wb
from workbench.errors import CriterionError


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
