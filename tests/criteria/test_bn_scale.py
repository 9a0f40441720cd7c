"""bn_scale: |gamma| of the BatchNorm after a layer, broadcast to its filters; clear errors elsewhere."""

import pytest
import torch
from conftest import assert_bitwise, snapshot
from zoo import make

import workbench as wb
from workbench.criteria.bn_scale import following_norms


def test_finds_the_batchnorm_after_each_layer_through_fx():
    model, _ = make("rescat")
    assert following_norms(model) == {"stem.0": "stem.1", "a": "a_bn", "pw": "pw_bn", "g": "g_bn"}
    cnn, _ = wb.demo.load("digits-cnn", pretrained=False)
    assert following_norms(cnn) == {"features.0": "features.1", "features.3": "features.4", "features.7": "features.8"}


def test_filters_with_the_smallest_gamma_go_first():
    model, data = wb.demo.load("digits-cnn", pretrained=False)
    gamma = torch.linspace(-1, 1, 32)[torch.randperm(32, generator=torch.Generator().manual_seed(0))]
    with torch.no_grad():
        model.features[4].weight.copy_(gamma)
    bench = wb.Workbench(model, data)
    bench.apply(wb.Plan({"features.3": wb.LayerPlan(0.25, "filter", "bn_scale")}), evaluate=False)
    gone = (model.features[3].weight.flatten(1) == 0).all(1)
    assert set(gone.nonzero().flatten().tolist()) == set(gamma.abs().argsort()[:8].tolist())
    assert (model.features[4].weight[gone] == 0).all()  # the coupled BatchNorm channel goes with its filter


def test_batchnorm_targets_score_their_own_gamma_and_other_layers_are_refused():
    model, data = make("rescat")
    bench = wb.Workbench(model, data)
    sel = bench.preview(wb.Plan({"a_bn": wb.LayerPlan(0.5, "weight", "bn_scale")}))
    w = model.a_bn.weight.detach().abs()
    assert set(sel.masks["a_bn.weight"].nonzero().flatten().tolist()) == set(w.argsort()[:4].tolist())
    snap = snapshot(model)
    with pytest.raises(wb.CriterionError, match=r"'(b|dw)' \(Conv2d\) is not followed by one.*use 'l1'"):
        bench.apply(wb.Plan.uniform(0.5, granularity="filter", criterion="bn_scale"))
    assert_bitwise(model, snap)  # nothing changed
    assert bench.store.position == 0
