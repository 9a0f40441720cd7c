"""analysis/connectivity.py: surviving connections and dead units of a layer, and path counts through the model."""

import numpy as np
import pytest
import torch
from zoo import make

import workbench as wb
from workbench.analysis.connectivity import dense_param
from workbench.errors import TargetError


def test_connectivity_shows_surviving_connections_and_dead_units():
    model, data = make("rescat")
    bench = wb.Workbench(model, data)
    dense_b = model.b.weight.detach().clone()
    bench.apply(wb.Plan.uniform(0.5, granularity="filter", criterion="l1"))
    bench.apply(wb.Plan.global_(0.7))
    c = bench.connectivity("b")
    w = model.b.weight.detach()
    np.testing.assert_allclose(c.weight, w.abs().sum((2, 3)).double().numpy())
    np.testing.assert_allclose(c.before, dense_b.abs().sum((2, 3)).double().numpy())
    torch.testing.assert_close(dense_param(bench, "b.weight"), dense_b, rtol=0, atol=0)
    assert np.array_equal(c.pruned, (c.weight == 0) & (c.before != 0))
    # filter pruning of the coupled group removed whole inputs of b (the stem's pruned filters) and whole filters
    stem_gone = (model.stem[0].weight.flatten(1) == 0).all(1).numpy()
    assert stem_gone.any() and np.array_equal(c.dead_in, stem_gone | (c.weight == 0).all(0))
    assert np.array_equal(c.dead_out, (w.flatten(1) == 0).all(1).numpy()) and c.dead_out.any()
    assert 0 < c.surviving < 1
    with pytest.raises(TargetError, match="Did you mean"):
        bench.connectivity("bb")


def test_connectivity_of_lstm_and_attention_layers():
    for name, layer, shape in (("lstm", "lstm", (16, 12)), ("mha", "attn", (48, 16))):
        model, data = make(name)
        bench = wb.Workbench(model, data)
        bench.apply(wb.Plan.uniform(0.5))
        c = bench.connectivity(layer)
        assert c.weight.shape == shape and c.before.shape == shape


def test_path_counts_fall_when_pruning_and_match_a_hand_count():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    data = [(torch.randn(8, 3), torch.randint(0, 2, (8,)))]
    bench = wb.Workbench(model, data)
    p = bench.paths()
    assert p.layers == ("0", "2") and not p.stopped
    np.testing.assert_allclose(p.log10_paths, np.log10([12, 24]))  # 3*4 paths to layer 0, 3*4*2 to the output
    bench.apply(wb.Plan({"0": wb.LayerPlan(0.5, "neuron")}))  # two of four hidden units gone
    p = bench.paths()
    np.testing.assert_allclose(p.log10_paths, np.log10([6, 12]))
    np.testing.assert_allclose(p.log10_paths_dense, np.log10([12, 24]))


def test_path_counts_through_residuals_and_concats():
    model, data = make("rescat")
    bench = wb.Workbench(model, data)
    p = bench.paths()
    assert "head" in p.layers and not p.stopped
    bench.apply(wb.Plan.global_(0.8))
    q = bench.paths()
    assert np.all(q.log10_paths <= p.log10_paths + 1e-9) and q.log10_paths[-1] < p.log10_paths[-1]
