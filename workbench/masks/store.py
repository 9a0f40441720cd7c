"""The mask store: in-place pruning of a plain `nn.Module` with exact, bitwise undo and redo.

Pruning zeroes weights in place, so the model stays a plain module: no hooks, no parametrizations,
no `torch.nn.utils.prune` — it deepcopies, pickles, saves, compiles and runs at dense speed. Each step
remembers which elements it zeroed (a bit-packed mask, 1/8 byte per element of a touched tensor) and
their old values (only the removed ones), so undo writes back exactly the bits that were there.

The store keeps the steps and moves between them as transactions; its helpers each do one part: `_packed` the
record of a step, `_writes` what a step writes to the tensors, `_edits` telling edits behind its back from its own,
`_restart` new starting points after such edits.

>>> import torch
>>> lin = torch.nn.Linear(4, 2)
>>> before = lin.weight.detach().clone()
>>> store = MaskStore(lin)
>>> _ = store.apply_({"weight": lin.weight.abs() < lin.weight.abs().median()})
>>> _ = store.undo_(); torch.equal(lin.weight, before)
True
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from .._interrupt import deferred_interrupt, settle
from ..errors import WorkbenchError
from ._edits import changes, check_written, edit_error, tracked
from ._packed import Step, _fingerprint
from ._packed import _pack as _pack  # re-exported, as _unpack: `from workbench.masks.store import _pack, _unpack`
from ._packed import _unpack as _unpack
from ._writes import prune_again, prune_new, taken_as_written, write_back
from .fastops import zero_

__all__ = ["MaskStore", "Step", "enforce"]


class MaskStore:
    """Records in-place pruning steps on `model` and undoes/redoes them bitwise, as transactions.

    A step whose ``info["weights"]`` holds a swap (an object with ``swap_(model)``, recorded by a training
    procedure) also exchanges those weights on apply, undo and redo, so every way of moving (undo, redo, goto, reset)
    reaches the trained or the pre-training values exactly.

    Steps form a linear history: `apply_` after `undo_` drops the steps that could have been redone.
    Parameters are looked up by name on every call, so the store never holds a stale tensor.

    **Every change is all-or-nothing.** `apply_`, `undo_`, `redo_`, `goto_` and `reset_` hold `lock` (a re-entrant
    lock: one thread changes the model at a time), hold Ctrl-C back while tensors are written, and on any error
    (an exception, a `KeyboardInterrupt`, a `MemoryError`) write back what they had written, so the model is
    exactly as before the call; ``goto_`` returns to where it started.

    **Edits behind its back are refused, not blended.** After each change the store notes, per parameter (and per
    buffer a training step swaps), the tensor object, its storage, shape, dtype, device and in-place version
    counter. When one of them moved since (an optimizer step, ``model.double()``, a swapped layer), `undo_`, `redo_`,
    `goto_`, `reset_` and `apply_` on top of recorded steps raise `OutsideEditError` naming the tensors, before
    changing anything (`outside_edits` lists them). Edits made through ``tensor.data`` bypass the version counter
    and are not seen. Code that writes to the model on purpose does it inside `transaction`.
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self._steps: list[Step] = []
        self._position = 0
        self._current: dict[str, Tensor] = {}
        self.lock = threading.RLock()
        self._depth = 0  # nesting of `transaction`, under `lock`
        self._seen: dict[str, tuple[weakref.ref, tuple]] = {}
        self._sync()

    # state -------------------------------------------------------------------------------------
    @property
    def position(self) -> int:
        """Number of steps currently applied."""
        return self._position

    @property
    def steps(self) -> tuple[Step, ...]:
        """All recorded steps, applied ones first; those at index >= position can be redone."""
        return tuple(self._steps)

    def current(self, name: str) -> Tensor | None:
        """Boolean mask of the elements of parameter `name` pruned by the applied steps (None: none)."""
        return self._current.get(name)

    def masks(self) -> dict[str, Tensor]:
        """All current masks (True = pruned), by full parameter name."""
        return dict(self._current)

    @property
    def nbytes(self) -> int:
        """Bytes held for undo/redo and the current masks."""
        return sum(d.nbytes for s in self._steps for d in s.deltas.values()) + sum(
            m.numel() for m in self._current.values()
        )

    def _param(self, name: str) -> Tensor:
        try:
            return self.model.get_parameter(name)
        except AttributeError:
            raise WorkbenchError(
                f"parameter {name!r} recorded by the mask store no longer exists on the model; "
                "was a layer replaced after pruning? Re-create the Workbench on the new model."
            ) from None

    def _fitting(self, name: str, mask: Tensor) -> Tensor:
        """Parameter `name`, after checking that `mask` is a bool tensor of its shape."""
        p = self._param(name)
        if mask.shape != p.shape or mask.dtype != torch.bool:
            raise WorkbenchError(
                f"mask for {name!r} must be a bool tensor of shape {tuple(p.shape)}, got {mask.dtype} {tuple(mask.shape)}"
            )
        return p

    # what the store last wrote (workbench.masks._edits) ----------------------------------------
    def _sync(self) -> None:
        """Note the identity and version of every tracked tensor as they are now (after a change of ours)."""
        self._seen = {name: (weakref.ref(t), _fingerprint(t)) for name, t in tracked(self.model, self._steps).items()}

    def fingerprints(self) -> dict[str, tuple]:
        """Per tensor undo/redo may write, its identity, shape, dtype, device and version counter (any write, in
        place or not, moves one of them)."""
        return {name: _fingerprint(t) for name, t in tracked(self.model, self._steps).items()}

    def outside_edits(self) -> dict[str, str]:
        """Tensors changed since the store last wrote the model, each with what happened to it (empty: none)."""
        return changes(self._seen, tracked(self.model, self._steps))

    def check(self) -> None:
        """Raise `OutsideEditError` if recorded steps exist and a tracked tensor changed behind the store's back."""
        self._verify()

    def _verify(self) -> None:
        if self._steps and (edits := self.outside_edits()):
            raise edit_error(edits)

    # transactions ------------------------------------------------------------------------------
    @property
    def in_transaction(self) -> bool:
        """Whether a `transaction` is open (its changes are the workbench's own until it ends)."""
        return self._depth > 0

    @contextmanager
    def transaction(self, *, check: bool = True) -> Iterator[MaskStore]:
        """Hold `lock` for a block that reads or writes the model on purpose (an analysis visiting other states, a
        training procedure). The outermost block first checks for outside edits (``check=True``) and, when it ends,
        notes the model's tensors as the store's own writes, so its deliberate changes never count as edits."""
        with self.lock:
            outer = self._depth == 0
            if outer and check:
                self._verify()
            self._depth += 1
            try:
                yield self
            finally:
                self._depth -= 1
                if outer:
                    self._sync()

    @contextmanager
    def _writing(self, *, check: bool) -> Iterator[list[Callable[[], Any]]]:
        """A transaction whose writes register their inverse first: on any error they run newest first (Ctrl-C is
        held back meanwhile), then the error propagates with the model and the history as before the block."""
        with self.transaction(check=check), deferred_interrupt():
            journal: list[Callable[[], Any]] = []
            saved = (list(self._steps), self._position, dict(self._current))
            try:
                yield journal
            except BaseException:
                for inverse in reversed(journal):
                    inverse()
                self._steps[:], self._position, self._current = saved[0], saved[1], saved[2]
                raise

    # changes -----------------------------------------------------------------------------------
    @torch.no_grad()
    def apply_(self, masks: Mapping[str, Tensor], info: Mapping[str, Any] | None = None) -> Step:
        """Zero the elements flagged True in `masks` (by full parameter name) and record a step.

        Elements that are already pruned are not recorded again. A swap in ``info["weights"]`` is exchanged after the
        zeros (a training step's trained values come in). Raises before changing anything if a mask does not fit its
        parameter.
        """
        info = dict(info or {})
        params = {name: self._fitting(name, mask) for name, mask in masks.items()}
        with self._writing(check=self._position > 0) as journal:
            current = dict(self._current)
            deltas = prune_new(params, masks, current, journal)
            swap = info.get("weights")
            if swap is not None:
                swap.swap_(self.model)
                journal.append(partial(swap.swap_, self.model))
            step = Step(deltas, info)
            del self._steps[self._position :]
            self._steps.append(step)
            self._position += 1
            self._current = current
        return step

    @torch.no_grad()
    def undo_(self) -> Step:
        """Restore the bits the last applied step removed."""
        with self._writing(check=True) as journal:
            if self._position == 0:
                raise WorkbenchError("nothing to undo: no pruning step is applied")
            step = self._steps[self._position - 1]
            swap = step.info.get("weights")
            if swap is not None:  # a training step: put the weights from before training back first
                swap.swap_(self.model)
                journal.append(partial(swap.swap_, self.model))
            current = dict(self._current)
            write_back(self._param, step.deltas, current, journal)
            self._position -= 1
            self._current = current
        return step

    @torch.no_grad()
    def redo_(self) -> Step:
        """Zero again what the next undone step removed."""
        with self._writing(check=True) as journal:
            if self._position >= len(self._steps):
                raise WorkbenchError("nothing to redo: no undone step follows the current one")
            step = self._steps[self._position]
            current = dict(self._current)
            prune_again(self._param, step.deltas, current, journal)
            swap = step.info.get("weights")
            if swap is not None:  # a training step: its trained weights come back after the zeros
                swap.swap_(self.model)
                journal.append(partial(swap.swap_, self.model))
            self._position += 1
            self._current = current
        return step

    def goto_(self, position: int) -> None:
        """Undo or redo until exactly `position` steps are applied; on any error, back where it started."""
        with self.lock:
            if isinstance(position, bool) or not isinstance(position, int) or not 0 <= position <= len(self._steps):
                raise WorkbenchError(f"history position must be an int in [0, {len(self._steps)}], got {position!r}")
            if position != self._position:
                self._goto(position)

    def _goto(self, position: int) -> None:
        with self.transaction(check=True), deferred_interrupt():
            start = self._position
            try:
                while self._position > position:
                    self.undo_()
                while self._position < position:
                    self.redo_()
            except BaseException:
                while self._position > start:  # every step moved so far is whole: move them back
                    self.undo_()
                while self._position < start:
                    self.redo_()
                raise

    def reset_(self) -> None:
        """Undo every applied step (they stay redoable)."""
        self.goto_(0)

    def truncate_(self) -> None:
        """Drop the steps that could be redone (those after the current position)."""
        with self.lock:
            del self._steps[self._position :]

    def discard_last_(self) -> Step:
        """Undo the last applied step and drop it from the history (with the steps after it), as one change."""
        with self.transaction(check=True), deferred_interrupt():
            step = self.undo_()
            try:
                del self._steps[self._position :]
            except BaseException:
                self.redo_()
                raise
        return step

    @contextmanager
    def trial(self) -> Iterator[int]:
        """Work that applies, moves and drops steps, then comes back: when the block ends (also on an error or
        Ctrl-C) the store returns to the position it started at, bitwise, and the steps that followed it (those that
        could be redone) are put back as they were. Yields the starting position. The block must not undo below it.

        >>> import torch
        >>> lin = torch.nn.Linear(4, 2); before = lin.weight.detach().clone()
        >>> store = MaskStore(lin)
        >>> with store.trial():
        ...     _ = store.apply_({"weight": torch.ones(2, 4, dtype=torch.bool)})
        >>> store.position, len(store.steps), torch.equal(lin.weight, before)
        (0, 0, True)
        """
        with self.transaction():
            start = self._position
            head, tail = list(self._steps[:start]), list(self._steps[start:])
            try:
                yield start
            finally:
                settle(lambda: self._position <= start, self.undo_)
                if any(a is not b for a, b in zip(head, self._steps)) or self._position != start:
                    raise WorkbenchError(  # the steps below the start were dropped: they cannot be put back
                        f"work inside MaskStore.trial() undid below its starting position {start} and replaced "
                        "steps there; move only on top of the starting state inside a trial"
                    )
                with deferred_interrupt():
                    self._steps[start:] = tail

    @torch.no_grad()
    def record_(
        self, masks: Mapping[str, Tensor], before: Mapping[str, Tensor], info: Mapping[str, Any] | None = None
    ) -> Step:
        """Record as one step a change already written to the model, without writing it again: the elements
        flagged True in `masks` are zero in the model now, and ``before[name]`` holds their values before the change
        (in row-major order, as ``p[mask]``). A swap in ``info["weights"]`` holds the values from before the change of
        the tensors it also updated (the model holds the updated ones). Undo then writes the old values back bitwise,
        like any step's. On top of recorded steps, write the change inside `transaction` (else it is an outside
        edit). Raises before recording anything if a mask or its values do not fit, or if a flagged element is not
        zero.

        >>> import torch
        >>> lin = torch.nn.Linear(4, 2); before = lin.weight.detach().clone()
        >>> mask = torch.zeros(2, 4, dtype=torch.bool); mask[0] = True
        >>> old = lin.weight.detach()[mask].clone()
        >>> with torch.no_grad():
        ...     _ = lin.weight.masked_fill_(mask, 0.0)
        >>> store = MaskStore(lin)
        >>> _ = store.record_({"weight": mask}, {"weight": old}); _ = store.undo_(); torch.equal(lin.weight, before)
        True
        """
        with self.lock:
            masks = dict(masks)
            for name, mask in masks.items():
                check_written(name, self._fitting(name, mask).detach(), mask, before.get(name))
            with self.transaction(check=self._position > 0), deferred_interrupt():
                current = dict(self._current)
                step = Step(taken_as_written(self._param, masks, before, current), dict(info or {}))
                del self._steps[self._position :]
                self._steps.append(step)
                self._position += 1
                self._current = current
            return step

    def _restart(self, masks: dict[str, Tensor]) -> None:
        """Clear the history: the model as it is now is position 0, with `masks` pruned (see `workbench.masks._restart`)."""
        self._steps.clear()
        self._position = 0
        self._current = masks
        self._sync()

    def adopt_(self, masks: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
        """Take the weights as they are now as the new starting point: the history is cleared (nothing before
        can be undone) and the pruned elements that are still exactly zero stay masked, with those of `masks` (True =
        pruned, by parameter name: zeroed by a step that kept no undo data). Returns those masks."""
        from ._restart import adopt

        with self.lock:
            return adopt(self, masks)

    def force_reset_(self) -> list[str]:
        """Write the recorded dense values back wherever the tensors still fit, whatever happened to them since,
        then clear the history (like `adopt_`). Returns the names that no longer fit (missing, other shape) and
        were left as they are. Edits elsewhere are kept. All-or-nothing like every change."""
        from ._restart import force_reset

        with self.lock, deferred_interrupt():
            return force_reset(self)


@torch.no_grad()
def enforce(model: nn.Module, store: MaskStore, *, grads: bool = True) -> None:
    """Keep pruned weights at zero while training: zero them (and their gradients) in place.

    Call after `optimizer.step()` (and, with ``grads=True``, it also clears their gradients so momentum
    does not build up). Cheap: one branch-free `zero_` per pruned tensor.
    """
    for name, mask in store.masks().items():
        p = model.get_parameter(name)
        zero_(p.detach(), mask.to(p.device))
        if grads and p.grad is not None:
            p.grad.masked_fill_(mask.to(p.grad.device), 0)
