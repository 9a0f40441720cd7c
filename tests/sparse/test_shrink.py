"""Physical shrink (workbench/sparse/shrink.py): which channels may go, and that the shrunk copy computes what the
masked model computes."""

import copy

import torch
from torch import nn

import workbench as wb
from workbench.sparse.shrink import count_params, prunable_channels, shrink_


def _mlp_bench(seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 3)).eval()
    bench = wb.Workbench(model, [(torch.randn(6, 8), torch.randint(0, 3, (6,)))])
    return model, bench


def _params(model):
    return dict(model.named_parameters(remove_duplicate=False))


def test_a_channel_goes_only_when_every_slice_coupled_to_it_is_pruned():
    model, bench = _mlp_bench()
    bench.apply(wb.Plan.uniform(0.5, granularity="neuron"), evaluate=False)
    found = prunable_channels(bench.groups, _params(model), bench.masks)
    assert {k: len(v) for k, v in found.items()} == {"0": 8, "2": 6}
    for gid, idx in found.items():  # each listed row is pruned, with its bias and the next layer's column
        layer = model.get_submodule(gid)
        assert (layer.weight[idx] == 0).all() and (layer.bias[idx] == 0).all()
    assert (model[2].weight[:, found["0"]] == 0).all() and (model[4].weight[:, found["2"]] == 0).all()
    # zero rows whose consumers still read them are not removable: without masks, zeros decide
    model2, bench2 = _mlp_bench()
    with torch.no_grad():
        model2[0].weight[:5] = 0
        model2[0].bias[:5] = 0
    assert "0" not in prunable_channels(bench2.groups, _params(model2))
    with torch.no_grad():
        model2[2].weight[:, :5] = 0
    assert prunable_channels(bench2.groups, _params(model2))["0"] == [0, 1, 2, 3, 4]


def test_a_layer_is_never_emptied():
    model, bench = _mlp_bench()
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].bias.zero_()
        model[2].weight.zero_()
    assert len(prunable_channels(bench.groups, _params(model))["0"]) == 15  # one of 16 kept


def test_the_shrunk_copy_computes_what_the_masked_model_computes_and_the_original_is_untouched():
    model, bench = _mlp_bench(1)
    bench.apply(wb.Plan.uniform(0.5, granularity="neuron", criterion="l1"), evaluate=False)
    found = prunable_channels(bench.groups, _params(model), bench.masks)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    small = copy.deepcopy(model)
    x = torch.randn(5, 8)
    shrink_(small, x, found, bench.groups)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert (small[0].out_features, small[2].in_features, small[2].out_features, small[4].in_features) == (8, 8, 6, 6)
    assert count_params(small) == (8 * 8 + 8) + (8 * 6 + 6) + (6 * 3 + 3)
    with torch.inference_mode():
        torch.testing.assert_close(small(x), model(x), atol=1e-5, rtol=1e-5)
    shrink_(small, x, {})  # nothing to remove: nothing changes
    assert small[0].out_features == 8
