"""Layer-wise pruning on a bench's `State`: one history step, undone bitwise (SparseGPT's updated weights included).

The run (`workbench.llm.prune.prune_`) holds the bench's store in a transaction (its lock: nothing else moves the
model meanwhile). Before each weight is written, what undo needs is kept: for a method that only zeroes (magnitude,
Wanda) the values it zeroes; for one that updates kept weights (SparseGPT) the whole weight. When the run ends, the
pruned model is recorded as it is as one step (`State.record(before=...)`, `MaskStore.record_`: the weights
are not written again; a SparseGPT step like a training step, with a `WeightSwap` holding the weights from before),
so `undo`, `redo`, `goto` and `reset` restore it bit for bit. Any error or Ctrl-C in the middle, or while recording,
writes the kept values back: the model is exactly as before.

``undo=False`` keeps nothing, for models whose copy does not fit in memory: the pruned model becomes the bench's new
starting point, as with `Workbench.adopt` (`History.adopt`: the history is cleared, nothing before can be undone; the pruned weights
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
from ..errors import DataError, WorkbenchError, WorkbenchWarning
from ..masks.fastops import compress, scatter_
from ..plan import LayerPlan, Plan
from ..state import as_state
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
    """See `Workbench.prune_llm`: the same on `bench`, a Workbench or its `State`; returns the step's entry (the new
    entry 0 with ``undo=False``) and keeps the run's `PruneResult` as the history's ``last_llm``."""
    state = as_state(bench)
    log, store = state.require_log("prune_llm's step"), state.store
    kept: dict[str, tuple[Tensor, Tensor | None]] = {}  # name -> (mask, zeroed values) or (whole weight, None)
    written: dict[str, Tensor] = {}

    def on_write(name: str, p: Tensor, mask: Tensor, updates: bool) -> None:
        written[name] = mask
        if undo and name not in kept:
            kept[name] = (p.detach().clone(), None) if updates else (mask, compress(p.detach(), mask))

    with store.lock:
        log.check_edits()
        data = state.calib if calib is None else calib
        if data is None:
            raise DataError("prune_llm needs calibration batches: pass calib= (or give the Workbench data/calib)")
        t0 = time.perf_counter()
        with store.transaction():
            if undo and evaluate:
                log.dense_metrics(state)  # the dense metrics, before the run prunes the model
            try:
                masks, result = prune_(
                    state.model,
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
                    adapter=state.adapter,
                    current=store.current,
                    on_write=on_write,
                    progress=progress,
                )
                log.last_llm = result
                if undo:
                    before, swap = _before(kept, masks)
                    plan = _plan(result, masks)
                    entry = state.record(masks, label=label or result.label(), plan=plan, weights=swap,
                                         evaluate=evaluate, before=before, started=t0)  # fmt: skip
            except BaseException:
                if undo:
                    _restore(state.model, kept)
                elif written:
                    log.adopt(state, written)
                    warnings.warn(
                        f"prune_llm(undo=False) stopped after pruning {len(written)} layer(s): they stay pruned "
                        "(undo=False keeps no copy to restore) and the bench took this state as its new start",
                        WorkbenchWarning,
                        stacklevel=3,
                    )
                raise
            if not undo:
                del kept
                log.adopt(state, masks)
                if evaluate and state.data is not None:
                    log.dense_metrics(state)
                return log.current
    return entry


def _restore(model, kept: dict[str, tuple[Tensor, Tensor | None]]) -> None:
    """Every written weight back to its value before the run (an error or Ctrl-C in the middle), bitwise."""
    with deferred_interrupt(), torch.no_grad():
        for name, (a, values) in kept.items():
            p = model.get_parameter(name).detach()
            if values is None:
                p.copy_(a)
            else:
                scatter_(p, a, values)


def _before(kept: dict[str, tuple[Tensor, Tensor | None]], masks: dict[str, Tensor]):
    """What the store records for the written step: per pruned weight the values its mask zeroed, and the
    `WeightSwap` of the weights a method updated (their whole values before the run; None when it only zeroes)."""
    from ..training._state import WeightSwap

    before, whole = {}, {}
    for name, mask in masks.items():
        a, values = kept[name]
        if values is None:
            whole[name] = a
            values = a[mask.to(a.device)]
        elif a is not mask and not torch.equal(
            a, mask.to(a.device)
        ):  # zeroed under another mask than the final one: from the whole
            raise WorkbenchError(f"{name!r} was written under two masks; prune_llm cannot record it as one step")
        before[name] = values
    return before, (WeightSwap(whole) if whole else None)


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
