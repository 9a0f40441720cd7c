"""Hand-written CNNs with the couplings of real CNN families (tests/zoo/cnn.py): filters prune and undo bitwise, the
shrunk model computes what the masked one computes, and what cannot be pruned structurally says why (never an
IndexError)."""

from __future__ import annotations

import pytest
import torch

import workbench as wb

from .cnn import CNNS, _images, calibrated

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
