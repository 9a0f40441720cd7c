"""llm/blocks.py: the blocks of each model family are found by their path (else the longest list of identical blocks
holding linear layers); an unknown model is an error naming what was looked for; the first block's inputs are
captured, positional or keyword, with caches off, the forward stopped there and the hook removed."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from workbench.errors import DataError, ModelError
from workbench.llm import find_blocks
from workbench.llm.blocks import BlockCall, block_layers, first_inputs, run_block

from .models import MODELS

pytest.importorskip("transformers")


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


class _Block(nn.Module):
    def __init__(self, d: int = 6, keyword: bool = False):
        super().__init__()
        self.fc, self.keyword = nn.Linear(d, d), keyword

    def forward(self, *args, **kwargs):
        h = kwargs["hidden_states"] if self.keyword else args[0]
        return (h + torch.relu(self.fc(h)), "extra")  # tuple outputs, as Hugging Face blocks return


class _Toy(nn.Module):
    """An embedding, a list of three blocks, a shorter one of two (unused), a list of norms (not blocks), a head."""

    def __init__(self, keyword: bool = False, skip: bool = False):
        super().__init__()
        self.emb = nn.Linear(3, 6)
        self.norms = nn.ModuleList([nn.LayerNorm(6), nn.LayerNorm(6)])
        self.pair = nn.ModuleList([_Block(), _Block()])
        self.stack = nn.ModuleList([_Block(keyword=keyword) for _ in range(3)])
        self.head = nn.Linear(6, 2)
        self.keyword, self.skip = keyword, skip

    def forward(self, x):
        h = self.emb(x)
        for b in self.stack[1:] if self.skip else self.stack:
            h = (b(hidden_states=h) if self.keyword else b(h, "mask"))[0]
        return self.head(self.norms[0](h))


def test_without_a_known_path_the_longest_list_of_identical_linear_blocks_is_found():
    model = _Toy()
    path, blocks = find_blocks(model)
    assert path == "stack" and blocks is model.stack
    assert block_layers(blocks[0]) == {"fc": blocks[0].fc}
    assert find_blocks(model, "stack")[1] is model.stack
    with pytest.raises(ModelError, match=r"blocks='head' is a Linear, not a non-empty nn\.ModuleList"):
        find_blocks(model, "head")


@pytest.mark.parametrize("keyword", [False, True], ids=["positional", "keyword"])
def test_first_inputs_are_what_block_0_gets_and_the_forward_stops_there(keyword):
    torch.manual_seed(0)
    model = _Toy(keyword=keyword).train()
    xs = [torch.randn(2, 4, 3), torch.randn(1, 4, 3)]
    head_calls = []
    model.head.register_forward_hook(lambda m, i, o: head_calls.append(1))
    calls = first_inputs(model, xs, model.stack[0])
    assert len(calls) == 2 and head_calls == []  # stopped at block 0: nothing after it ran
    assert model.training and not model.stack[0]._forward_pre_hooks  # train mode back, the hook removed
    for c, x in zip(calls, xs):
        with torch.no_grad():
            assert torch.equal(c.hidden, model.emb(x))
        assert (c.key == "hidden_states") if keyword else (c.key is None and c.args[1] == "mask")
        # run_block gives the block's hidden states; with_hidden swaps them, keeping the other arguments
        out = run_block(model.stack[0], c)
        with torch.no_grad():
            assert torch.equal(out, model.stack[0](*c.args, **c.kwargs)[0])
        moved = c.with_hidden(out)
        assert moved.hidden is out and moved.key == c.key
        assert (moved.kwargs.keys() == c.kwargs.keys()) if keyword else (moved.args[1:] == c.args[1:])


def test_a_model_that_never_calls_the_block_or_no_data_is_an_error_and_leaves_no_hook():
    model = _Toy(skip=True)
    with pytest.raises(ModelError, match=r"calibration batch 0 never called its first block \(_Block\).*blocks="):
        first_inputs(model, [torch.randn(1, 4, 3)], model.stack[0])
    assert not model.stack[0]._forward_pre_hooks
    with pytest.raises(DataError, match="yielded no batches"):
        first_inputs(_Toy(), [], _Toy().stack[0])


def test_a_block_returning_no_hidden_states_is_an_error_naming_it():
    class Odd(nn.Module):
        def forward(self, h):
            return {"h": h}

    with pytest.raises(ModelError, match="block Odd returned dict, expected hidden states"):
        run_block(Odd(), BlockCall((torch.zeros(1),), {}))


def test_caches_are_switched_off_in_the_captured_call():
    model = MODELS["llama"]()
    (call,) = first_inputs(model, [{"input_ids": torch.zeros(1, 5, dtype=torch.long)}], model.model.layers[0])
    assert call.kwargs.get("use_cache", False) is False
    assert all(not type(v).__name__.endswith("Cache") for v in (*call.args, *call.kwargs.values()))
    assert call.hidden.shape == (1, 5, model.config.hidden_size)
