"""Moving a bench between states (a mixin of `workbench.bench.Workbench`): undo, redo, goto, reset, adopt, hand
edits recorded as a step, and trials that come back. Each is one transaction of the mask store."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from .errors import WorkbenchWarning

if TYPE_CHECKING:
    from ._bench_history import HistoryEntry

__all__ = ["Moves"]


class Moves:
    """`undo`, `redo`, `goto`, `reset`, `adopt`, `edit` and `trial` of a bench with a `store`, a `_log` (its
    `workbench.history.History`) and `current`."""

    # undo/redo: a training step (`apply_masks(weights=...)`) also swaps the weights it changed; the store does that
    def undo(self) -> HistoryEntry:
        """Restore the state before the last applied step, bitwise."""
        with self.store.lock:
            self.store.undo_()
            return self.current

    def redo(self) -> HistoryEntry:
        """Re-apply the step undone last."""
        with self.store.lock:
            self.store.redo_()
            return self.current

    def reset(self, *, force: bool = False) -> HistoryEntry:
        """Back to the dense model, bitwise; the steps stay in the history and can be redone.

        ``force=True`` is the way out after weights were edited outside the workbench (`OutsideEditError`): the
        recorded dense values are written back wherever the workbench pruned (and the weights before each training
        step wherever one trained), edits elsewhere are kept, and the history is cleared: the result is the new
        starting point. Tensors that no longer fit (a layer replaced by one of another shape) are named in a
        warning and left as they are."""
        if not force:
            with self.store.lock:
                self.store.reset_()
                return self.current
        skipped = self._log.force_reset(self.state)
        if skipped:
            warnings.warn(
                f"reset(force=True) left {len(skipped)} tensor(s) as they are because they no longer fit what was "
                f"recorded: {', '.join(repr(n) for n in skipped[:8])}",
                WorkbenchWarning,
                stacklevel=2,
            )
        return self.current

    def adopt(self, *, masks: dict[str, Tensor] | None = None) -> HistoryEntry:
        """Take the weights as they are now, edits made outside the workbench included, as the new starting point.

        The way out of an `OutsideEditError` that keeps the edits: the history is cleared (the values from before
        the edits were never recorded, so nothing before this point can be undone), and the pruned weights that are
        still exactly zero stay masked (fine-tuning keeps them at zero), with those of `masks` (True = pruned, by
        parameter name: weights zeroed without undo data, as ``prune_llm(undo=False)`` does). Returns the new entry 0.

        >>> import torch, workbench as wb
        >>> model = torch.nn.Linear(4, 2)
        >>> bench = wb.Workbench(model, [(torch.randn(8, 4), torch.randint(0, 2, (8,)))])
        >>> _ = bench.apply(wb.Plan.uniform(0.5))
        >>> with torch.no_grad():
        ...     _ = model.bias.add_(1.0)             # an edit behind the workbench's back
        >>> bench.undo()                             # doctest: +ELLIPSIS
        Traceback (most recent call last):
        workbench.errors.OutsideEditError: 1 tensor(s) changed outside the workbench ... 'bias' was modified in place ...
        >>> bench.adopt().index, bench.store.position, len(bench.masks["weight"].nonzero())
        (0, 0, 4)
        """
        return self._log.adopt(self.state, masks)

    @contextmanager
    def edit(self, label: str = "edit") -> Iterator[nn.Module]:
        """Edit the weights by hand and keep exact undo: the changes made inside the block become one history step
        (``kind="edit"``) that undo reverses bitwise. Pruned weights stay zero (the masks are enforced at the end).
        An error inside the block puts every tensor back as it was.

        >>> import torch, workbench as wb
        >>> model = torch.nn.Linear(4, 2)
        >>> bench = wb.Workbench(model, [(torch.randn(8, 4), torch.randint(0, 2, (8,)))])
        >>> before = model.bias.detach().clone()
        >>> with bench.edit() as m, torch.no_grad():
        ...     _ = m.bias.add_(1.0)
        >>> bench.current.kind, torch.equal(model.bias, before)
        ('edit', False)
        >>> _ = bench.undo(); torch.equal(model.bias, before)
        True
        """
        from .training._state import MaskView, named_state, record, snapshot

        with self.store.transaction():
            before = snapshot(self.model)
            try:
                yield self.model
            except BaseException:
                live = named_state(self.model)
                with torch.no_grad():
                    for k, v in before.items():
                        live[k].detach().copy_(v)
                raise
            record(self.state, before, MaskView(self.model, self.store), label=label, kind="edit")

    @contextmanager
    def trial(self) -> Iterator[Moves]:
        """Try steps and come back: what the block applies, trains or moves is undone and dropped when it ends (also
        on an error or Ctrl-C); the model (bitwise), the history (redoable steps included), `last_sensitivity` and
        `last_allocation` are as before it. `workbench.compare` runs every strategy in one.

        >>> import torch, workbench as wb
        >>> bench = wb.Workbench(torch.nn.Linear(4, 2), [(torch.randn(8, 4), torch.randint(0, 2, (8,)))])
        >>> with bench.trial():
        ...     _ = bench.apply(wb.Plan.uniform(0.5))
        >>> len(bench.history), bench.report(evaluate=False).sparsity
        (1, 0.0)
        """
        with self._log.trial():
            yield self

    def goto(self, index: int) -> HistoryEntry:
        """Undo or redo until history entry `index` (0 = dense) is the current state."""
        with self.store.lock:
            self.store.goto_(index)  # raises the store's error for an index out of range
            return self.current
