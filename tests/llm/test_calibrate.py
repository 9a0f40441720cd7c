"""Layer-wise calibration: every block sees exactly the inputs the already-pruned blocks before it produce."""

from __future__ import annotations

import pytest
import torch
from conftest import assert_plain

from workbench.llm import find_blocks, layerwise
from workbench.llm.calibrate import calibration_inputs

from .models import MODELS, _run, batches

pytestmark = pytest.mark.usefixtures("one_thread")
pytest.importorskip("transformers")


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


def test_layers_reading_the_same_input_share_one_statistics_object():
    model = MODELS["llama"]()

    def visit(block):
        stats = block.collect({"hessian"})
        p = block.name
        assert stats[f"{p}.self_attn.q_proj"] is stats[f"{p}.self_attn.k_proj"] is stats[f"{p}.self_attn.v_proj"]
        assert stats[f"{p}.mlp.gate_proj"] is stats[f"{p}.mlp.up_proj"]
        assert len({id(s) for s in stats.values()}) == 4  # qkv, o, gate/up, down

    layerwise(model, calibration_inputs(model, batches()), visit)
