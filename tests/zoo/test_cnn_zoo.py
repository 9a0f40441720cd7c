"""Hand-written CNNs with the couplings of real CNN families (tests/zoo/cnn.py): filters prune and undo bitwise, the
shrunk model computes what the masked one computes, and what cannot be pruned structurally says why (never an
IndexError)."""

from __future__ import annotations

import copy

import pytest
import torch

import workbench as wb

from .cnn import CNNS, LeViTLike, _images, calibrated

# layers whose filters are refused today, with the words their reason must contain
REFUSED = {
    "res2net-like": {"stem.0": "split/concat"},
}


@pytest.mark.parametrize("name", list(CNNS))
def test_cnn_filters_prune_undo_and_shrink_exactly(name):
    torch.manual_seed(0)
    model = calibrated(CNNS[name]())
    data = _images()
    bench = wb.Workbench(model, data)
    dense = {k: v.clone() for k, v in model.state_dict().items()}
    refused = {t.name: t.unsupported.get("filter", "") for t in bench.targets if "filter" not in t.granularities}
    refused = {k: v for k, v in refused.items() if bench.targets[k].kind == "conv"}
    for layer, words in REFUSED.get(name, {}).items():
        assert words in refused.get(layer, ""), (layer, refused.get(layer))
    if name not in REFUSED:
        assert not refused, refused  # every conv of these families prunes by filter
    assert all(refused.values()), refused  # and a refusal always says why
    bench.apply(wb.Plan.uniform(0.5, granularity="filter"), evaluate=False)
    fast, rep = wb.sparse.compile(bench, backend="shrink")
    assert rep.params_after < rep.params_before
    x = data[0][0]
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x), rtol=1e-5, atol=1e-6)
    bench.undo()
    assert all(torch.equal(v, dense[k]) for k, v in model.state_dict().items())


def test_a_model_caching_tensors_on_its_first_forward_still_copies_and_compiles():
    # LeViT/EfficientFormer gather their attention biases on the first eval forward and keep them in a dict: the
    # structure analysis runs the model with autograd on, and a cached tensor holding its graph would break deepcopy
    torch.manual_seed(0)
    model = calibrated(LeViTLike())
    data = _images()
    bench = wb.Workbench(model, data)
    assert all(not t.requires_grad for t in model.attn.attention_bias_cache.values())
    copy.deepcopy(model)
    bench.apply(wb.Plan.uniform(0.5), evaluate=False)
    model.attn.attention_bias_cache.clear()  # the model's own cache would keep the biases from before pruning
    fast, _ = wb.sparse.compile(bench, backend="shrink")
    x = data[0][0]
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x), rtol=1e-5, atol=1e-6)
