"""sparse/stages.py: the shrink stage removes fully pruned channels (also of a plain module), `auto` keeps a backend
only where it measures faster, and a layer whose parent reads its weight stays dense."""

import torch
from torch import nn

import workbench as wb
from workbench.sparse import SparseLinear
from workbench.sparse import stages as compile_mod  # the compile stages time with `measure`

from .conftest import _pruned_bench


def test_shrink_removes_fully_pruned_channels_and_reports_params():
    model, _, bench = _pruned_bench("rescat")
    fast, rep = wb.sparse.compile(bench, backend="shrink", batch_size=8, repeats=3)
    assert rep.removed_channels and rep.params_after < rep.params_before
    assert rep.params_after == sum(p.numel() for p in fast.parameters())
    assert fast.stem[0].out_channels < model.stem[0].out_channels
    assert fast.stem[1].num_features == fast.stem[0].out_channels  # BatchNorm shrunk with it
    # every channel left in the shrunk stem is one that was not fully pruned
    alive = (model.stem[0].weight.flatten(1) != 0).any(1)
    assert fast.stem[0].out_channels == int(alive.sum())


def test_shrink_a_plain_module_treats_zero_channels_as_pruned():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)).eval()
    with torch.no_grad():
        model[0].weight[:6] = 0
        model[0].bias[:6] = 0
        model[2].weight[:, :6] = 0
    x = torch.randn(5, 8)
    fast, _ = wb.sparse.compile(model, backend="shrink", example_inputs=x, repeats=3)
    assert fast[0].out_features == 10 and fast[2].in_features == 10
    torch.testing.assert_close(fast(x), model(x), atol=1e-5, rtol=1e-5)


def test_auto_keeps_a_backend_only_where_it_measures_faster(monkeypatch):
    _, _, bench = _pruned_bench("mha")
    speed = {}

    def fake_measure(fns, **kw):
        return {k: speed.get(k, 1.0) for k in fns}

    monkeypatch.setattr(compile_mod, "measure", fake_measure)
    speed.update(dense=1.0, csr=0.5, compiled=0.5, shrink=2.0, base=1.0)
    fast, rep = wb.sparse.compile(bench, batch_size=8)
    assert {r.chosen for r in rep.layers if r.tried} == {"csr"}
    assert any(isinstance(m, SparseLinear) for m in fast.modules())
    assert not rep.removed_channels  # shrink "measured" slower: not used
    assert next(r for r in rep.layers if r.name == "ff1").speedup == 2.0
    # out_proj is read by MultiheadAttention directly: never replaced, and the report says why
    out_proj = next(r for r in rep.layers if r.name == "attn.out_proj")
    assert out_proj.chosen == "dense" and "not called as a module" in out_proj.skipped["csr"]
    speed.update(csr=0.98)  # within min_gain of dense: not worth it
    fast, rep = wb.sparse.compile(bench, batch_size=8)
    assert {r.chosen for r in rep.layers} == {"dense"} and not any(isinstance(m, SparseLinear) for m in fast.modules())
    speed.update(compiled=3.0)  # nothing kept: the result is the dense copy, not timed (or reported) against itself
    fast, rep = wb.sparse.compile(bench, batch_size=8)
    assert rep.compiled_ms == rep.dense_ms and not any("compiled model measured slower" in n for n in rep.notes)
    speed.update(csr=0.5, compiled=3.0)  # faster per layer, slower as a whole: auto never returns slower than dense
    fast, rep = wb.sparse.compile(bench, batch_size=8)
    assert rep.compiled_ms <= rep.dense_ms and not any(isinstance(m, SparseLinear) for m in fast.modules())
    assert any("measured slower" in n for n in rep.notes)


def test_csr_falls_back_where_a_parent_reads_the_weight():
    torch.manual_seed(0)
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 2, 32, batch_first=True), 1, enable_nested_tensor=False)
    model = nn.Sequential(enc, nn.Flatten(), nn.Linear(64, 3)).eval()
    x = torch.randn(4, 4, 16)
    fast, rep = wb.sparse.compile(model, backend="csr", example_inputs=x, repeats=3)
    by = {r.name: r for r in rep.layers}
    assert by["2"].chosen == "csr"
    assert by["0.layers.0.linear1"].chosen == "dense" and "fails with it" in by["0.layers.0.linear1"].skipped["csr"]
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), model(x), atol=1e-5, rtol=1e-5)
