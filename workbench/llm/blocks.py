"""The decoder blocks of a language model, and the inputs its first block receives.

Layer-wise pruning (SparseGPT, Wanda) runs the model's blocks one at a time. `find_blocks` names the sequence of
blocks (Hugging Face: ``model.layers`` of LLaMA/Mistral/Qwen, ``transformer.h`` of GPT-2/Falcon,
``gpt_neox.layers``, ``model.decoder.layers`` of OPT, ``encoder.layer`` of BERT ...; else the longest `ModuleList` of
identical blocks holding linear layers). `first_inputs` runs the model on calibration batches until block 0 is
called, keeps exactly what it was called with (the hidden states and every keyword: attention mask, position ids,
rotary position embeddings) and stops the forward there: a forward pre-hook raises a private exception, and the hook
is removed in a ``finally``. Caches are switched off (``use_cache=False``; a cache object passed to the block is
replaced by None), so running a block again never grows a cache.

>>> import torch, transformers as T
>>> model = T.LlamaForCausalLM(T.LlamaConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=4,
...                                          num_key_value_heads=2, intermediate_size=64, vocab_size=100))
>>> name, blocks = find_blocks(model)
>>> name, len(blocks), sorted(block_layers(blocks[0]))[:2]
('model.layers', 2, ['mlp.down_proj', 'mlp.gate_proj'])
>>> calls = first_inputs(model, [{"input_ids": torch.randint(0, 100, (2, 8))}], blocks[0])
>>> calls[0].hidden.shape
torch.Size([2, 8, 32])
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import DataError, ModelError
from ..evaluate import eval_mode
from ..rules import is_conv1d

__all__ = ["BlockCall", "block_layers", "find_blocks", "first_inputs", "run_block"]

# dotted paths of the block sequence in the model families we know, tried in this order
KNOWN_PATHS = (
    "model.layers",
    "model.decoder.layers",
    "model.language_model.layers",
    "transformer.h",
    "transformer.layers",
    "transformer.blocks",
    "gpt_neox.layers",
    "decoder.layers",
    "encoder.layer",
    "bert.encoder.layer",
    "roberta.encoder.layer",
    "layers",
    "h",
    "blocks",
)
_CACHE_KEYS = ("cache", "past_key_value", "past_key_values", "layer_past")


class _Stop(Exception):
    """Raised by the pre-hook on block 0 to end the forward once its inputs are captured (never escapes)."""


@dataclass
class BlockCall:
    """One call of a block: its positional and keyword arguments; the hidden states are ``args[0]`` or, when the
    block is called with keywords only, ``kwargs[key]``."""

    args: tuple
    kwargs: dict[str, Any]
    key: str | None = None

    @property
    def hidden(self) -> Tensor:
        return self.kwargs[self.key] if self.key is not None else self.args[0]

    def with_hidden(self, h: Tensor) -> BlockCall:
        if self.key is not None:
            return BlockCall(self.args, {**self.kwargs, self.key: h}, self.key)
        return BlockCall((h, *self.args[1:]), self.kwargs, None)


def _is_linear(m: nn.Module) -> bool:
    return isinstance(m, nn.Linear) or is_conv1d(m)


def find_blocks(model: nn.Module, path: str | None = None) -> tuple[str, nn.ModuleList]:
    """``(dotted name, blocks)`` of the model's sequence of transformer blocks; `path` names it explicitly."""
    if path is not None:
        try:
            blocks = model.get_submodule(path)
        except AttributeError:
            raise ModelError(
                f"the model has no submodule {path!r}; pass blocks= the dotted name of its block list "
                f"(an nn.ModuleList, e.g. 'model.layers')"
            ) from None
        if not isinstance(blocks, (nn.ModuleList, nn.Sequential)) or len(blocks) == 0:
            raise ModelError(f"blocks={path!r} is a {type(blocks).__name__}, not a non-empty nn.ModuleList of blocks")
        return path, blocks  # type: ignore[return-value]
    mods = dict(model.named_modules())
    for p in KNOWN_PATHS:
        m = mods.get(p)
        if isinstance(m, nn.ModuleList) and len(m) and any(_is_linear(x) for x in m[0].modules()):
            return p, m
    best: tuple[int, str, nn.ModuleList] | None = None
    for name, m in mods.items():
        if not isinstance(m, nn.ModuleList) or not len(m):
            continue
        if len({type(b) for b in m}) != 1 or not any(_is_linear(x) for x in m[0].modules()):
            continue
        if best is None or len(m) > best[0]:
            best = (len(m), name, m)
    if best is None:
        raise ModelError(
            f"cannot find the transformer blocks of {type(model).__name__}: looked for an nn.ModuleList at "
            f"{', '.join(KNOWN_PATHS)}, then for any nn.ModuleList of identical blocks holding nn.Linear (or "
            "Conv1D) layers, and found none; pass blocks='<dotted name of the block list>'"
        )
    return best[1], best[2]


def block_layers(block: nn.Module) -> dict[str, nn.Module]:
    """The linear layers (``nn.Linear`` and Hugging Face's ``Conv1D``) inside `block`, by name relative to it."""
    return {n: m for n, m in block.named_modules() if n and _is_linear(m)}


def _no_cache(v: Any) -> Any:
    cls = type(v)
    return None if any(c.__name__.endswith("Cache") for c in cls.__mro__) else v


def _clean(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Arguments as the block got them, with caches switched off (a cache object would grow on every call)."""
    args = tuple(_no_cache(a) for a in args)
    kw = {k: (None if k in _CACHE_KEYS else _no_cache(v)) for k, v in kwargs.items()}
    if "use_cache" in kw:
        kw["use_cache"] = False
    return args, kw


def _accepts(model: nn.Module, name: str) -> bool:
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False
    return name in params


def first_inputs(model: nn.Module, inputs: Iterable, block: nn.Module) -> list[BlockCall]:
    """What `block` (the first of the sequence) is called with on each of `inputs` (model inputs: a dict of keyword
    tensors, a tuple of positional ones, or a tensor, on the model's device): the forward of `model` stops as soon as
    the block is called. The hook is removed afterwards, also on error."""
    from ..adapter import call

    calls: list[BlockCall] = []

    def pre(mod: nn.Module, args: tuple, kwargs: dict):
        a, kw = _clean(args, kwargs)
        key = None
        if not a:
            key = "hidden_states" if "hidden_states" in kw else next(k for k, v in kw.items() if isinstance(v, Tensor))
        calls.append(BlockCall(a, kw, key))
        raise _Stop

    no_cache = _accepts(model, "use_cache")
    handle = block.register_forward_pre_hook(pre, with_kwargs=True)
    try:
        with eval_mode(model), torch.no_grad():
            for i, x in enumerate(inputs):
                if isinstance(x, Mapping) and no_cache:
                    x = {**x, "use_cache": False}
                try:
                    call(model, x)
                except _Stop:
                    continue
                raise ModelError(
                    f"the model's forward on calibration batch {i} never called its first block "
                    f"({type(block).__name__}); pass blocks= the dotted name of the blocks it runs"
                )
    finally:
        handle.remove()
    if not calls:
        raise DataError("the calibration data yielded no batches; pass a non-empty list of batches (calib=...)")
    return calls


def run_block(block: nn.Module, call: BlockCall) -> Tensor:
    """The block's output hidden states for one captured call (the first element of a tuple output)."""
    out = block(*call.args, **call.kwargs)
    if isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, Tensor):
        raise ModelError(f"block {type(block).__name__} returned {type(out).__name__}, expected hidden states")
    return out
