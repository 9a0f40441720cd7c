"""Layer-wise pruning on a `Workbench`: one history step, undone bitwise (SparseGPT's updated weights included).

The run (`workbench.llm.prune.prune_`) holds the bench's store in a transaction (its lock: nothing else moves the
model meanwhile). Before each weight is written, what undo needs is kept: for a method that only zeroes (magnitude,
Wanda) the values it zeroes; for one that updates kept weights (SparseGPT) the whole weight. When the run ends, the
model is put back as it was and the step is recorded through the mask store like any step (a SparseGPT step like a
training step: with a `WeightSwap` of the updated weights), so `undo`, `redo`, `goto` and `reset` restore it bit for
bit. Any error or Ctrl-C in the middle writes the kept values back: the model is exactly as before.

``undo=False`` keeps nothing, for models whose copy does not fit in memory: the pruned model becomes the bench's new
starting point, as with `Workbench.adopt` (the history is cleared, nothing before can be undone; the pruned weights
are masked, so fine-tuning keeps them at zero). An error in the middle then leaves the blocks pruned so far pruned
(and adopted: a warning says so).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from .._interrupt import deferred_interrupt
from ..errors import DataError, WorkbenchWarning
from ..masks.fastops import compress, scatter_
from ..plan import LayerPlan, Plan
from .prune import PruneResult, prune_

__all__ = ["prune_llm"]


def prune_llm(
    bench,
    sparsity: float | None = None,
    method: str = "wanda",
    pattern: str = "unstructured",
    *,
    owl: bool = False,
    owl_lambda: float = 0.08,
    owl_m: float = 5.0,
    calib: Iterable | None = None,
    nsamples: int | None = None,
    blocks: str | None = None,
    damp: float = 0.01,
    blocksize: int = 128,
    undo: bool = True,
    evaluate: bool = True,
    label: str | None = None,
    progress: Any = False,
):
    """See `Workbench.prune_llm`."""
    data = bench.calib if calib is None else calib
    if data is None:
        raise DataError("prune_llm needs calibration batches: pass calib= (or give the Workbench data/calib)")
    store = bench.store
    t0 = time.perf_counter()
    kept: dict[str, tuple[Tensor, Tensor | None]] = {}  # name -> (mask, zeroed values) or (whole weight, None)
    written: dict[str, Tensor] = {}

    def on_write(name: str, p: Tensor, mask: Tensor, updates: bool) -> None:
        written[name] = mask
        if undo and name not in kept:
            kept[name] = (p.detach().clone(), None) if updates else (mask, compress(p.detach(), mask))

    with store.transaction():
        try:
            masks, result = prune_(
                bench.model,
                data,
                sparsity,
                method,
                pattern,
                owl=owl,
                owl_lambda=owl_lambda,
                owl_m=owl_m,
                nsamples=nsamples,
                blocks=blocks,
                damp=damp,
                blocksize=blocksize,
                adapter=bench.adapter,
                current=store.current,
                on_write=on_write,
                progress=progress,
            )
        except BaseException:
            if undo:
                _restore(bench.model, kept)
            elif written:
                _adopt(bench, written)
                warnings.warn(
                    f"prune_llm(undo=False) stopped after pruning {len(written)} layer(s): they stay pruned (undo=False "
                    "keeps no copy to restore) and the bench took this state as its new start",
                    WorkbenchWarning,
                    stacklevel=3,
                )
            raise
        bench.last_llm = result
        plan = _plan(result, masks)
        text = label or result.label()
        if not undo:
            del kept
            _adopt(bench, masks)
            if evaluate and bench.data is not None:
                bench._dense_metrics()
            return bench.current
        swap = _put_back(bench.model, kept)
        entry = bench.apply_masks(masks, label=text, plan=plan, weights=swap, evaluate=evaluate)
    return _timed(bench, entry, time.perf_counter() - t0)


def _restore(model, kept: dict[str, tuple[Tensor, Tensor | None]]) -> None:
    """Every written weight back to its value before the run (an error or Ctrl-C in the middle), bitwise."""
    with deferred_interrupt(), torch.no_grad():
        for name, (a, values) in kept.items():
            p = model.get_parameter(name).detach()
            if values is None:
                p.copy_(a)
            else:
                scatter_(p, a, values)


def _put_back(model, kept: dict[str, tuple[Tensor, Tensor | None]]):
    """Put the model back as before the run (so the store records the step on it) and return the `WeightSwap` of
    the updated weights (None when the method only zeroes). The kept copies are released as they are used."""
    from ..training._state import WeightSwap

    whole = {}
    with deferred_interrupt(), torch.no_grad():
        for name in list(kept):
            a, values = kept.pop(name)
            if values is None:
                whole[name] = a
            else:
                scatter_(model.get_parameter(name).detach(), a, values)
                del a, values
        if not whole:
            return None
        swap = WeightSwap(whole)
        whole.clear()
        swap.swap_(model)  # the model holds the weights before the run; the swap the pruned, updated ones
    return swap


def _adopt(bench, masks: dict[str, Tensor]) -> None:
    bench.store.adopt_(masks)
    bench._rebase()


def _plan(result: PruneResult, masks: dict[str, Tensor]) -> dict[str, Any]:
    """The step as a plain plan: every pruned layer with its block's sparsity, the pattern and the method."""
    gran = "weight" if result.pattern == "unstructured" else result.pattern
    n = len(result.blocks) + 1
    layers = {}
    for pname in masks:
        layer = pname[: -len(".weight")]
        index = int(layer[n:].split(".", 1)[0])
        layers[layer] = LayerPlan(result.block_ratios[index], gran, result.method)
    return Plan(layers).to_dict()


def _timed(bench, entry, seconds: float):
    """The entry with the whole run's seconds (the step's own entry counts only the recording)."""
    from dataclasses import replace

    bench._entries[entry.index - 1] = replace(bench._entries[entry.index - 1], seconds=seconds)
    return bench.current
