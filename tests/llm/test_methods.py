"""Layer-wise methods: Wanda's formula, exact N:M and per-row shares, earlier masks kept, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import workbench as wb
from workbench.errors import PlanError
from workbench.llm import LayerStats, available_methods, get_method, parse_pattern, prune_
from workbench.masks import is_nm_sparse

from .models import MODELS, batches

pytestmark = pytest.mark.usefixtures("one_thread")
METHODS = available_methods()


class Toy(nn.Module):
    """One block holding one linear layer: the layer's inputs are the model's inputs."""

    def __init__(self, d_in: int = 8, d_out: int = 4):
        super().__init__()
        self.layers = nn.ModuleList([nn.Sequential(nn.Linear(d_in, d_out, bias=False))])

    def forward(self, x):
        for b in self.layers:
            x = b(x)
        return x


def _stats(x: torch.Tensor) -> LayerStats:
    x = x.reshape(-1, x.shape[-1]).double()
    return LayerStats(x.shape[0], x.square().sum(0), 2 * x.T @ x)


def test_wanda_equals_its_formula_on_a_toy_layer():
    torch.manual_seed(0)
    model = Toy()
    x = torch.randn(2, 5, 8) * torch.linspace(0.1, 3.0, 8)  # features of very different scales
    w = model.layers[0][0].weight.detach().clone()
    masks, _ = prune_(model, [(x, torch.zeros(2))], 0.5, method="wanda")
    # the formula, written out: S_ij = |W_ij| * sqrt(sum over all rows of x_j^2); prune the lowest half of each row
    norms = torch.sqrt((x.double() ** 2).sum((0, 1)))
    scores = w.double().abs() * norms
    expect = torch.zeros_like(w, dtype=torch.bool)
    for i in range(w.shape[0]):
        expect[i, torch.argsort(scores[i])[:4]] = True
    assert torch.equal(masks["layers.0.0.weight"], expect)
    assert torch.equal(model.layers[0][0].weight, w.masked_fill(expect, 0.0))
    # the bench's per-row Wanda criterion (whole-model input norms) agrees on a one-block model
    toy = Toy()
    toy.load_state_dict({"layers.0.0.weight": w})
    bench = wb.Workbench(toy, [(x, torch.zeros(2, 5, 4))], task="regression")
    bench.apply(wb.Plan.uniform(0.5, criterion="wanda-row"), evaluate=False)
    assert torch.equal(bench.masks["layers.0.0.weight"], expect)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("pattern", ["2:4", "4:8", "1:4"])
def test_nm_masks_keep_exactly_n_of_every_m(method, pattern):
    model = MODELS["llama"]()
    masks, res = prune_(model, batches(), method=method, pattern=pattern)
    pat = parse_pattern(pattern)
    assert res.sparsity == pytest.approx(1 - pat.n / pat.m)
    for name, mask in masks.items():
        w = model.get_parameter(name)
        kept = (~mask).reshape(mask.shape[0], -1, pat.m).sum(-1)
        assert bool((kept == pat.n).all()), name
        assert bool(is_nm_sparse(w, pat.n, pat.m)) and torch.equal(w == 0, mask), name


@pytest.mark.parametrize("method", METHODS)
def test_unstructured_prunes_the_asked_share(method):
    model = MODELS["gpt2"]()  # Conv1D: weights stored in x out, rows are the columns
    masks, _ = prune_(model, batches(), 0.25, method=method)
    for name, mask in masks.items():
        rows = mask.t() if "attn" in name or "mlp" in name else mask
        k = int(rows.shape[1] * 0.25)
        if method == "magnitude":  # compared within the whole layer
            assert int(mask.sum()) == int(mask.numel() * 0.25), name
        else:  # within each output row
            assert bool((rows.sum(1) == k).all()), name


@pytest.mark.parametrize("method", METHODS)
def test_weights_pruned_before_stay_pruned_and_count(method):
    model = MODELS["llama"]()
    w = model.model.layers[0].mlp.up_proj.weight
    earlier = torch.zeros_like(w, dtype=torch.bool)
    earlier[:, :40] = True  # 40 of 32 x 64 per row: more than half of each row
    with torch.no_grad():
        w.masked_fill_(earlier, 0.0)
    name = "model.layers.0.mlp.up_proj.weight"
    masks, _ = prune_(model, batches(), 0.5, method=method, current=lambda n: earlier if n == name else None)
    assert bool(masks[name][earlier].all())
    assert int(masks[name].sum()) == int(earlier.sum())  # the layer already had more than 50%: nothing new


def test_unknown_method_and_bad_patterns_are_errors_naming_the_value():
    model = MODELS["llama"]()
    with pytest.raises(PlanError, match=r"'sparsgpt'.*Did you mean 'sparsegpt'"):
        prune_(model, batches(), method="sparsgpt")
    for bad in ("4:2", "2-4", "0:4"):
        with pytest.raises(PlanError, match=rf"pattern must be .*got '{bad}'"):
            prune_(model, batches(), pattern=bad)
    with pytest.raises(PlanError, match=r"pattern 2:4 prunes 50%.*sparsity=0.7"):
        prune_(model, batches(), 0.7, pattern="2:4")
    with pytest.raises(
        PlanError,
        match=r"2:6 needs the input width of .model\.layers\.0\.self_attn\.q_proj. \(32\) to be a multiple of 6",
    ):
        prune_(model, batches(), pattern="2:6")
    with pytest.raises(PlanError, match=r"OWL sets a sparsity per block"):
        prune_(model, batches(), owl=True, pattern="2:4")


def test_a_method_returning_a_wrong_mask_is_refused_by_name():
    @wb.llm.register_method("bad-shape-test", overwrite=True)
    def _bad(weight, stats, sparsity, pattern, current, options):
        """Wrong shape."""
        return torch.zeros(3, dtype=torch.bool)

    with pytest.raises(PlanError, match=r"'bad-shape-test' returned .* for 'model.layers.0"):
        prune_(MODELS["llama"](), batches(), method="bad-shape-test")


def test_magnitude_and_wanda_give_the_same_mask_on_unit_inputs():
    w = torch.randn(6, 8)
    ones = _stats(torch.ones(1, 8))
    a = get_method("wanda").fn(w, ones, 0.5, parse_pattern("2:4"), None, {})
    b = get_method("magnitude").fn(w, ones, 0.5, parse_pattern("2:4"), None, {})
    assert torch.equal(a, b)
