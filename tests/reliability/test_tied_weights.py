"""Tied weights (an output head sharing its weight with the embedding) compile in every backend that runs here,
stay one tensor in the compiled copy and through export + load, and undo stays bitwise."""

from __future__ import annotations

import warnings

import pytest
import torch
from conftest import assert_bitwise, assert_plain, snapshot
from torch import nn

import workbench as wb
from workbench.sparse import SparseLinear

CPU_BACKENDS = [n for n in wb.sparse.available_backends() if "cpu" in wb.sparse.get_backend(n).devices]


class TiedLM(nn.Module):
    """Embedding(50, 16) -> Linear(16, 16) -> Linear(16, 50) whose weight is the embedding's; (B, T) ids -> (B, 50)."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(50, 16)
        self.mid = nn.Linear(16, 16)
        self.head = nn.Linear(16, 50, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, ids):
        return self.head(torch.relu(self.mid(self.emb(ids).mean(1))))


def _bench(include=None):
    torch.manual_seed(0)
    model = TiedLM().eval()
    ids = torch.randint(0, 50, (32, 7))
    data = [(ids[:16], torch.randint(0, 50, (16,))), (ids[16:], torch.randint(0, 50, (16,)))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", wb.WorkbenchWarning)  # "head shares its weights with emb": said once
        bench = wb.Workbench(model, data)
    before = snapshot(model)
    plan = wb.Plan.uniform(0.5) if include is None else wb.Plan.uniform(0.5, include=include)
    bench.apply(plan, evaluate=False)
    return model, data, bench, before


def test_the_toy_ties_one_tensor_that_named_parameters_lists_once():
    model = TiedLM()
    assert model.head.weight is model.emb.weight
    assert "head.weight" not in dict(model.named_parameters())  # the cause of the old KeyError in compile
    assert "head.weight" in dict(model.named_parameters(remove_duplicate=False))
    assert "head.weight" in model.state_dict()


@pytest.mark.parametrize("include", [None, ["emb", "mid"]], ids=["default-plan", "embedding-pruned-too"])
@pytest.mark.parametrize("backend", ["auto", *CPU_BACKENDS])
def test_tied_weights_compile_stay_tied_and_match_the_masked_model(backend, include):
    model, data, bench, _ = _bench(include)
    if include:
        assert bool((model.emb.weight == 0).any()) and bool((model.head.weight == 0).any())  # the shared tensor
    masked = snapshot(model)
    x = data[0][0]
    with torch.inference_mode():
        want = model(x)
    fast, rep = wb.sparse.compile(bench, backend=backend, batch_size=16, repeats=3)
    assert_bitwise(model, masked)
    assert_plain(model)
    assert fast.head.weight is fast.emb.weight  # one tensor in the compiled copy
    assert fast.emb.weight is not model.emb.weight
    assert len([p for p in fast.parameters() if p is fast.emb.weight]) == 1
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), want, atol=1e-5, rtol=1e-5)
    assert rep.max_abs_err <= 1e-5
    if backend == "csr":
        assert isinstance(fast.mid, SparseLinear)  # the untied layer is converted
        head = next(r for r in rep.layers if r.name == "head")
        assert head.chosen == "dense" and "tied" in head.skipped["csr"]


@pytest.mark.parametrize("backend", ["auto", *CPU_BACKENDS])
def test_tied_weights_survive_export_and_load(backend, tmp_path):
    model, data, bench, _ = _bench(["emb", "mid"])
    x = data[0][0]
    fast, _ = wb.sparse.compile(bench, backend=backend, batch_size=16, repeats=3)
    wb.sparse.export(fast, tmp_path, formats=("safetensors", "plan"))
    for fresh in (TiedLM(), TiedLM):
        back = wb.sparse.load(tmp_path, fresh)  # check=True: the saved example outputs are reproduced
        assert back.head.weight is back.emb.weight
        with torch.inference_mode():
            torch.testing.assert_close(back(x), model(x), atol=1e-5, rtol=1e-5)


def test_undo_after_compiling_tied_weights_is_bitwise():
    model, _, bench, before = _bench(["emb", "mid"])
    for backend in ("auto", *CPU_BACKENDS):
        wb.sparse.compile(bench, backend=backend, batch_size=16, repeats=3)
    bench.undo()
    assert_bitwise(model, before)
    assert model.head.weight is model.emb.weight
    assert_plain(model)


def test_shrink_keeps_channels_that_would_cut_a_tied_tensor():
    torch.manual_seed(0)
    model = TiedLM().eval()
    with torch.no_grad():  # neurons 0-3 of mid and the tied columns they feed are zero: shrinkable but for the tie
        model.mid.weight[:4] = 0
        model.mid.bias[:4] = 0
        model.emb.weight[:, :4] = 0
    ids = torch.randint(0, 50, (8, 5))
    fast, rep = wb.sparse.compile(model, backend="shrink", example_inputs=ids, repeats=3)
    assert fast.head.weight is fast.emb.weight and fast.mid.out_features == 16
    assert any("tied to 'emb.weight'" in n for n in rep.notes)
    with torch.inference_mode():
        torch.testing.assert_close(fast(ids), model(ids), atol=1e-5, rtol=1e-5)
