"""Layer-wise calibration: every block sees exactly the inputs the already-pruned blocks before it produce."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import assert_plain
from torch import nn

from workbench.errors import ModelError
from workbench.llm import LayerStats, find_blocks, get_method, layerwise, parse_pattern, prune_
from workbench.llm.calibrate import calibration_inputs

from .models import MODELS, batches

pytestmark = pytest.mark.usefixtures("one_thread")
pytest.importorskip("transformers")


def _linears(block: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in block.named_modules() if isinstance(m, nn.Linear) or type(m).__name__ == "Conv1D"}


def _run(model, data) -> None:
    with torch.no_grad():
        for b in data:
            model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], use_cache=False)


def _block_inputs(model, blocks, data) -> list[list[torch.Tensor]]:
    """The hidden states every block receives in full forwards of the model, per batch."""
    seen: list[list[torch.Tensor]] = [[] for _ in blocks]
    hooks = [
        b.register_forward_pre_hook(
            lambda m, a, k, _i=i: seen[_i].append((a[0] if a else k["hidden_states"]).clone()), with_kwargs=True
        )
        for i, b in enumerate(blocks)
    ]
    try:
        _run(model, data)
    finally:
        for h in hooks:
            h.remove()
    return seen


@pytest.mark.parametrize("family", sorted(MODELS))
def test_each_block_gets_the_inputs_of_the_pruned_blocks_before_it(family):
    model = MODELS[family](layers=3, dtype=torch.float64)
    data = batches(pad=True)
    got: list[list[torch.Tensor]] = []

    def visit(block):
        got.append([c.hidden.clone() for c in block.calls])
        with torch.no_grad():  # prune the block (any change will do): its smallest half of every layer
            for m in block.layers.values():
                w = m.weight
                w.masked_fill_(w.abs() < w.abs().median(), 0.0)

    path, blocks = find_blocks(model)
    assert layerwise(model, calibration_inputs(model, data), visit) == path
    expect = _block_inputs(model, blocks, data)  # a full forward of the pruned model
    assert len(got) == len(blocks)
    for i, (g, e) in enumerate(zip(got, expect)):
        for a, b in zip(g, e, strict=True):
            assert torch.equal(a, b), f"block {i}"
    assert_plain(model)


def _reference(model, data, method: str, sparsity: float, pattern):
    """Sequential reference: for each block, full forwards of the model pruned so far give its layers' statistics."""
    meth, pat = get_method(method), parse_pattern(pattern)
    _, blocks = find_blocks(model)
    for block in blocks:
        layers = _linears(block)
        stats = {n: LayerStats() for n in layers}

        def hook(args, st: LayerStats):
            x = args[0].detach().reshape(-1, args[0].shape[-1]).double()
            st.add(x.shape[0], x.square().sum(0), 2 * x.T @ x)

        hooks = [m.register_forward_pre_hook(lambda m, a, _s=stats[n]: hook(a, _s)) for n, m in layers.items()]
        try:
            _run(model, data)
        finally:
            for h in hooks:
                h.remove()
        with torch.no_grad():
            for n, m in layers.items():
                conv1d = type(m).__name__ == "Conv1D"
                work = (m.weight.t() if conv1d else m.weight).detach().clone()
                mask = meth.fn(work, stats[n], sparsity, pat, None, {"damp": 0.01, "blocksize": 128})
                new = work.masked_fill(mask, 0.0) if not meth.updates else work
                m.weight.copy_(new.t() if conv1d else new)


@pytest.mark.parametrize("family", sorted(MODELS))
@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
def test_prune_equals_the_sequential_reference(family, method):
    model = MODELS[family](layers=2, dtype=torch.float64)
    ref = copy.deepcopy(model)
    data = batches(pad=family == "llama")
    masks, res = prune_(model, data, 0.5, method=method)
    _reference(ref, data, method, 0.5, None)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p, ref.get_parameter(name), rtol=1e-9, atol=1e-12, msg=name)
    for name, mask in masks.items():
        assert torch.equal(mask, ref.get_parameter(name) == 0), name
    assert res.sequences == 6 and res.tokens == 72 and len(res.block_seconds) == 2
    assert_plain(model)


def test_an_error_in_a_visit_removes_every_hook():
    model = MODELS["llama"]()

    def visit(block):
        block.collect({"norms", "hessian"})
        if block.index == 1:
            raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        layerwise(model, calibration_inputs(model, batches()), visit)
    assert_plain(model)


def test_collect_on_a_block_sums_every_input_row():
    model = MODELS["llama"](dtype=torch.float64)
    data = batches()

    def visit(block):
        stats = block.collect({"norms", "hessian"})
        for n, st in stats.items():
            assert st.rows == 6 * 12, n  # two batches of 3 x 12 tokens
            torch.testing.assert_close(torch.diagonal(st.hessian), 2 * st.sq)

    layerwise(model, calibration_inputs(model, data), visit)


def test_nsamples_cuts_the_calibration_sequences():
    model = MODELS["llama"]()
    inputs = calibration_inputs(model, batches(n=3, rows=3), nsamples=4)
    assert [x["input_ids"].shape[0] for x in inputs] == [3, 1]


def test_blocks_of_an_unknown_model_are_an_error_naming_what_was_looked_for():
    with pytest.raises(ModelError, match=r"model\.layers.*transformer\.h.*blocks="):
        find_blocks(nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(ModelError, match="no submodule 'nope'"):
        find_blocks(MODELS["llama"](), "nope")


@pytest.mark.parametrize(
    ("family", "path"), [("llama", "model.layers"), ("gpt2", "transformer.h"), ("opt", "model.decoder.layers")]
)
def test_blocks_are_found_in_each_family(family, path):
    assert find_blocks(MODELS[family]())[0] == path


def test_layers_reading_the_same_input_share_one_statistics_object():
    model = MODELS["llama"]()

    def visit(block):
        stats = block.collect({"hessian"})
        p = block.name
        assert stats[f"{p}.self_attn.q_proj"] is stats[f"{p}.self_attn.k_proj"] is stats[f"{p}.self_attn.v_proj"]
        assert stats[f"{p}.mlp.gate_proj"] is stats[f"{p}.mlp.up_proj"]
        assert len({id(s) for s in stats.values()}) == 4  # qkv, o, gate/up, down

    layerwise(model, calibration_inputs(model, batches()), visit)
