"""llm/prune.py: one-shot layer-wise pruning equals the sequential reference (full forwards of the model pruned so
far give each block's statistics) for every family and method."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import assert_plain
from torch import nn

from workbench.llm import LayerStats, find_blocks, get_method, parse_pattern, prune_

from .models import MODELS, _run, batches

pytestmark = pytest.mark.usefixtures("one_thread")
pytest.importorskip("transformers")


def _linears(block: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in block.named_modules() if isinstance(m, nn.Linear) or type(m).__name__ == "Conv1D"}


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
