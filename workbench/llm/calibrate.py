"""Layer-wise calibration: the model's blocks visited in order, each on the inputs the (pruned) blocks before it give.

This is how SparseGPT and Wanda calibrate a language model without holding the activations of every layer: the
inputs of block 0 are captured once (`workbench.llm.blocks.first_inputs`), then for each block in order a visitor
looks at it (collects input statistics of its linear layers with `Block.collect`, prunes it in place), and the block,
as the visitor left it, is run on its inputs to give the next block's inputs. Only one block's activations are held
(its inputs; each is replaced by the output as soon as it is computed). Every hook is removed in a ``finally``, so the
model ends plain.

Statistics per linear layer (`LayerStats`), over every row of its input (all positions of all sequences, padding
included as the papers do): ``sq``, the sum of squares of each input feature (Wanda's ``||X_j||^2``, float64), and
``hessian``, ``2 X^T X`` (SparseGPT's Hessian without dampening; float32, float64 for a float64 model). Hugging Face's
``Conv1D`` gets the same statistics over its input features. Layers that read the same tensor (the q/k/v projections,
gate/up) share one `LayerStats` object: computed once and held once.

>>> import torch, transformers as T
>>> model = T.LlamaForCausalLM(T.LlamaConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=4,
...                                          num_key_value_heads=2, intermediate_size=64, vocab_size=100))
>>> seen = []
>>> def visit(block):
...     stats = block.collect({"norms"})
...     seen.append((block.name, tuple(stats[f"{block.name}.mlp.down_proj"].sq.shape)))
>>> _ = layerwise(model, [{"input_ids": torch.randint(0, 100, (2, 8))}], visit)
>>> seen
[('model.layers.0', (64,)), ('model.layers.1', (64,))]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..adapter import size
from ..errors import ModelError
from ..evaluate import eval_mode
from ..rules import is_conv1d
from .blocks import BlockCall, block_layers, find_blocks, first_inputs, run_block

__all__ = ["KINDS", "Block", "LayerStats", "calibration_inputs", "layerwise"]

KINDS = ("norms", "hessian")


@dataclass
class LayerStats:
    """Input statistics of one linear layer over the calibration rows it saw (see the module docstring)."""

    rows: int = 0
    sq: Tensor | None = None
    hessian: Tensor | None = None

    def add_input(self, x: Tensor, kinds: set[str], hdtype: torch.dtype) -> None:
        """Accumulate one input tensor (features in the last dimension) in place."""
        x = x.detach().reshape(-1, x.shape[-1])
        self.rows += x.shape[0]
        work = x if x.dtype == torch.float64 else x.float()
        if "norms" in kinds:
            sq = work.square().sum(0, dtype=torch.float64)
            self.sq = sq if self.sq is None else self.sq.add_(sq)
        if "hessian" in kinds:
            xh = work.to(hdtype)
            if self.hessian is None:
                self.hessian = torch.zeros(x.shape[-1], x.shape[-1], dtype=hdtype, device=x.device)
            self.hessian.addmm_(xh.t(), xh, alpha=2.0)

    def add(self, rows: int, sq: Tensor | None, hessian: Tensor | None) -> None:
        """Add precomputed increments: rows, sums of squares per feature, ``2 X^T X``."""
        self.rows += rows
        if sq is not None:
            self.sq = sq.clone() if self.sq is None else self.sq.add_(sq)
        if hessian is not None:
            self.hessian = hessian.clone() if self.hessian is None else self.hessian.add_(hessian)


@dataclass
class Block:
    """One block during layer-wise calibration: its position, full dotted name, module, the calls it gets (one per
    calibration batch: the outputs of the blocks before it) and its linear layers by full dotted name."""

    index: int
    name: str
    module: nn.Module
    calls: list[BlockCall]
    layers: dict[str, nn.Module]
    advanced: bool = field(default=False)

    def collect(self, kinds: Iterable[str], *, advance: bool = False) -> dict[str, LayerStats]:
        """Run the block on its inputs with hooks on its linear layers and return their input statistics
        (`kinds` from `KINDS`). ``advance=True`` also replaces the inputs by the block's outputs (the next block's
        inputs, from this same pass: use it only when the block is not changed afterwards)."""
        kinds = set(kinds)
        unknown = kinds - set(KINDS)
        if unknown:
            raise ValueError(f"unknown statistics {sorted(unknown)}; available: {KINDS}")
        stats = {n: LayerStats() for n in self.layers}
        with _hooks(self.layers, stats, kinds):
            self._run(advance)
        return stats

    def advance(self) -> None:
        """Replace the inputs by the block's outputs as it is now."""
        self._run(True)

    def _run(self, advance: bool) -> None:
        for i, call in enumerate(self.calls):
            out = run_block(self.module, call)
            if advance:
                self.calls[i] = call.with_hidden(out)
            del out
        self.advanced = self.advanced or advance


@contextmanager
def _hooks(layers: dict[str, nn.Module], stats: dict[str, LayerStats], kinds: set[str]) -> Iterator[None]:
    """Pre-hooks adding each layer's input to its statistics. Layers called one after the other on the same tensor
    (q/k/v projections, gate/up) share one `LayerStats` object (computed once, held once): `stats` then maps their
    names to the same object. Which layers share is fixed by the first call and must stay so."""
    handles = []
    last: list[Any] = [None, None, None]  # the last input tensor, the layer whose statistics hold it, their dtype
    shares: dict[str, str] = {}

    def hook(name: str, hdtype: torch.dtype, args: tuple) -> None:
        x = args[0]
        owner = last[1] if last[0] is x and last[2] == hdtype else name
        if shares.setdefault(name, owner) != owner:
            raise ModelError(
                f"layer {name!r} read the same input as {shares[name]!r} in one calibration batch but not in another; "
                "layer-wise statistics cannot be shared between them"
            )
        if owner != name:
            stats[name] = stats[owner]
            return
        stats[name].add_input(x, kinds, hdtype)
        last[0], last[1], last[2] = x, name, hdtype

    try:
        for name, m in layers.items():
            hdtype = torch.float64 if m.weight.dtype == torch.float64 else torch.float32
            handles.append(m.register_forward_pre_hook(lambda mod, args, _n=name, _d=hdtype: hook(_n, _d, args)))
        yield
    finally:
        for h in handles:
            h.remove()
        last.clear()


def calibration_inputs(model: nn.Module, data: Iterable, adapter: Any = None, nsamples: int | None = None) -> list:
    """The model inputs of the batches of `data` (on the model's device), cut after `nsamples` samples (sequences)."""
    from ..adapter import Adapter, take

    adapter = adapter or Adapter(model)
    out, have = [], 0
    for x, _ in adapter.batches(data, model):
        if nsamples is not None:
            n = size(x)
            if have + n > nsamples:
                x = take(x, nsamples - have)
            have += size(x)
        out.append(x)
        if nsamples is not None and have >= nsamples:
            break
    return out


def layerwise(
    model: nn.Module,
    inputs: Iterable,
    visit: Callable[[Block], Any],
    *,
    blocks: str | None = None,
    progress: Callable[[Block], Any] | None = None,
) -> str:
    """Call ``visit(block)`` for each block of `model` in order, on the inputs the blocks before it (as their visits
    left them) produce from `inputs` (model inputs, e.g. from `calibration_inputs`); returns the blocks' dotted name.
    `progress(block)` is called after each block. The model is run in eval mode under ``torch.no_grad``."""
    path, seq = find_blocks(model, blocks)
    with eval_mode(model), torch.no_grad():
        calls = first_inputs(model, inputs, seq[0])
        for i, module in enumerate(seq):
            name = f"{path}.{i}"
            layers = {f"{name}.{n}": m for n, m in block_layers(module).items()}
            block = Block(i, name, module, calls, layers)
            visit(block)
            if not block.advanced and i < len(seq) - 1:
                block.advance()
            calls = block.calls
            if progress is not None:
                progress(block)
    return path


def weight_2d(m: nn.Module) -> Tensor:
    """The layer's weight as ``(out, in)``: a view (transposed for Hugging Face's ``Conv1D``, stored ``in x out``)."""
    w = m.weight.detach()
    return w.t() if is_conv1d(m) else w
