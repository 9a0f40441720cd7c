"""The mask store: in-place pruning of a plain `nn.Module` with exact, bitwise undo and redo.

Pruning zeroes weights in place, so the model stays a plain module: no hooks, no parametrizations,
no `torch.nn.utils.prune` — it deepcopies, pickles, saves, compiles and runs at dense speed. Each step
remembers which elements it zeroed (a bit-packed mask, 1/8 byte per element of a touched tensor) and
their old values (only the removed ones), so undo writes back exactly the bits that were there.

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
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from .._interrupt import deferred_interrupt
from ..errors import OutsideEditError, WorkbenchError
from .fastops import compress, count_nonzero, empty, scatter_, zero_

__all__ = ["MaskStore", "enforce"]

_BITS = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8)


def _pack(mask: Tensor) -> Tensor:
    if mask.device.type == "cpu":  # numpy's packbits, 1M elements at a time into pre-faulted memory (fastops.empty)
        import numpy as np

        flat = mask.reshape(-1).numpy()
        out = empty((flat.size + 7) // 8, torch.uint8)
        o = out.numpy()
        for i in range(0, flat.size, 1 << 20):  # a multiple of 8: chunks pack to whole bytes
            o[i // 8 : (i + (1 << 20)) // 8] = np.packbits(flat[i : i + (1 << 20)], bitorder="little")
        return out
    flat = mask.reshape(-1).to(torch.uint8)
    pad = (-flat.numel()) % 8
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    return (flat.view(-1, 8) * _BITS.to(flat.device)).sum(1, dtype=torch.uint8)


def _unpack(packed: Tensor, shape: torch.Size) -> Tensor:
    n = shape.numel()
    if packed.device.type == "cpu":  # numpy's unpackbits, 1M bits at a time into pre-faulted memory (fastops.empty)
        import numpy as np

        out = empty(n, torch.bool)
        o, p = out.numpy().view(np.uint8), packed.numpy()
        for i in range(0, n, 1 << 20):
            chunk = p[i // 8 : (i + (1 << 20)) // 8]
            o[i : i + (1 << 20)] = np.unpackbits(chunk, count=min(1 << 20, n - i), bitorder="little")
        return out.view(shape)
    bits = (packed.unsqueeze(1) & _BITS.to(packed.device)) != 0
    return bits.view(-1)[:n].view(shape)


@dataclass(frozen=True)
class _Delta:
    packed: Tensor  # uint8, which elements this step zeroed
    values: Tensor  # their values before the step, in row-major order
    shape: torch.Size

    @property
    def count(self) -> int:
        return self.values.numel()

    def mask(self) -> Tensor:
        return _unpack(self.packed, self.shape)

    @property
    def nbytes(self) -> int:
        return self.packed.nbytes + self.values.nbytes


@dataclass(frozen=True)
class Step:
    """One recorded pruning step: per parameter, what it removed; `info` is free-form plain data."""

    deltas: Mapping[str, _Delta]
    info: Mapping[str, Any] = field(default_factory=dict)

    @property
    def removed(self) -> int:
        return sum(d.count for d in self.deltas.values())


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

    # what the store last wrote ------------------------------------------------------------------
    def _tracked(self) -> dict[str, Tensor]:
        """The tensors undo/redo may write: every parameter, and the buffers a recorded training step swaps."""
        out = dict(self.model.named_parameters())
        for step in self._steps:
            swap = step.info.get("weights")
            for name in getattr(swap, "values", {}):
                if name not in out:
                    try:
                        out[name] = self.model.get_buffer(name)
                    except AttributeError:
                        pass
        return out

    def _sync(self) -> None:
        """Note the identity and version of every tracked tensor as they are now (after a change of ours)."""
        self._seen = {name: (weakref.ref(t), _fingerprint(t)) for name, t in self._tracked().items()}

    def outside_edits(self) -> dict[str, str]:
        """Tensors changed since the store last wrote the model, each with what happened to it (empty: none)."""
        now = self._tracked()
        out: dict[str, str] = {}
        for name, (ref, (ptr, shape, dtype, device, version)) in self._seen.items():
            t = now.get(name)
            if t is None:
                out[name] = "is no longer on the model (a layer was removed or renamed)"
            elif ref() is not t:
                out[name] = "was replaced by another tensor (a layer or parameter was swapped)"
            elif (t.dtype, t.device) != (dtype, device):
                out[name] = f"was converted from {dtype} on {device} to {t.dtype} on {t.device}"
            elif tuple(t.shape) != shape:
                out[name] = f"changed shape from {shape} to {tuple(t.shape)}"
            elif t.data_ptr() != ptr:
                out[name] = "got new data (its .data was replaced)"
            elif t._version != version:
                out[name] = (
                    f"was modified in place (version {version} -> {t._version}: an optimizer step, load_state_dict "
                    "or an in-place edit)"
                )
        return out

    def check(self) -> None:
        """Raise `OutsideEditError` if recorded steps exist and a tracked tensor changed behind the store's back."""
        self._verify()

    def _verify(self) -> None:
        """Raise `OutsideEditError` if recorded steps exist and a tracked tensor changed behind the store's back."""
        if not self._steps:
            return
        edits = self.outside_edits()
        if edits:
            shown = "; ".join(f"{n!r} {why}" for n, why in list(edits.items())[:6])
            more = f" (and {len(edits) - 6} more)" if len(edits) > 6 else ""
            raise OutsideEditError(
                f"{len(edits)} tensor(s) changed outside the workbench since it last wrote the model: {shown}{more}. "
                "Undo/redo would write recorded values into the edited weights and give neither the old state nor "
                "the new one, so nothing was changed. Ways out: bench.adopt() keeps the weights as they are now as "
                "the new starting point (the steps so far can no longer be undone); bench.reset(force=True) writes "
                "the recorded dense values back where the workbench pruned and clears the history; to edit weights "
                "by hand and keep undo, edit inside `with bench.edit(): ...`.",
                edits,
            )

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
        params = {}
        for name, mask in masks.items():
            p = self._param(name)
            if mask.shape != p.shape or mask.dtype != torch.bool:
                raise WorkbenchError(
                    f"mask for {name!r} must be a bool tensor of shape {tuple(p.shape)}, "
                    f"got {mask.dtype} {tuple(mask.shape)}"
                )
            params[name] = p
        with self._writing(check=self._position > 0) as journal:
            deltas: dict[str, _Delta] = {}
            current = dict(self._current)
            for name, mask in masks.items():
                p = params[name].detach()
                new = mask.to(p.device)
                cur = current.get(name)
                if cur is not None:
                    new = new & ~cur
                if not count_nonzero(new):
                    continue
                delta = _Delta(_pack(new), compress(p, new), p.shape)
                journal.append(partial(scatter_, p, new, delta.values))
                zero_(p, new)
                deltas[name] = delta
                current[name] = new if cur is None else cur | new
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
            for name, d in step.deltas.items():
                p = self._param(name).detach()
                mask = d.mask().to(p.device)
                journal.append(partial(zero_, p, mask))  # the pruned elements were +0.0 (zero_ writes +0.0)
                scatter_(p, mask, d.values.to(p.device))
                cur = current[name] & ~mask
                if count_nonzero(cur):
                    current[name] = cur
                else:
                    del current[name]
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
            for name, d in step.deltas.items():
                p = self._param(name).detach()
                mask = d.mask().to(p.device)
                values = d.values.to(p.device)
                journal.append(partial(scatter_, p, mask, values))
                zero_(p, mask)
                cur = current.get(name)
                current[name] = mask if cur is None else cur | mask
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

    def restore_tail_(self, steps: Iterable[Step]) -> None:
        """Make `steps` the ones that follow the current position again (to put back a redoable tail after work
        that recorded and discarded its own steps, as `workbench.compare` does)."""
        with self.lock:
            self._steps[self._position :] = list(steps)
            self._sync()

    def adopt_(self, masks: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
        """Take the weights as they are now as the new starting point: the history is cleared (nothing before
        can be undone) and the pruned elements that are still exactly zero stay masked, with those of `masks` (True =
        pruned, by parameter name: zeroed by a step that kept no undo data). Returns those masks."""
        with self.lock:
            base: dict[str, Tensor] = {}
            params = dict(self.model.named_parameters())
            held = dict(self._current)
            for name, m in (masks or {}).items():
                cur = held.get(name)
                held[name] = m if cur is None else cur | m.to(cur.device)
            for name, m in held.items():
                p = params.get(name)
                if p is not None and p.shape == m.shape:
                    m = m.to(p.device)
                    still = m & (p.detach() == 0)
                    if torch.equal(still, m):  # every masked element is zero (the usual case): no second copy
                        still = m
                    if count_nonzero(still):
                        base[name] = still
            self._steps.clear()
            self._position = 0
            self._current = base
            self._sync()
            return dict(base)

    @torch.no_grad()
    def force_reset_(self) -> list[str]:
        """Write the recorded dense values back wherever the tensors still fit, whatever happened to them since,
        then clear the history (like `adopt_`). Returns the names that no longer fit (missing, other shape) and
        were left as they are. Edits elsewhere are kept. All-or-nothing like every change."""
        with self.lock, deferred_interrupt():
            named = {**dict(self.model.named_buffers()), **dict(self.model.named_parameters())}
            skipped: list[str] = []
            journal: list[Callable[[], Any]] = []

            def fits(name: str, shape) -> Tensor | None:
                t = named.get(name)
                if t is None or tuple(t.shape) != tuple(shape):
                    if name not in skipped:
                        skipped.append(name)
                    return None
                return t.detach()

            try:
                for step in reversed(self._steps[: self._position]):
                    swap = step.info.get("weights")
                    for name, stored in getattr(swap, "values", {}).items():
                        t = fits(name, stored.shape)
                        if t is not None:
                            old = t.clone()
                            journal.append(partial(t.copy_, old))
                            t.copy_(stored.to(device=t.device, dtype=t.dtype))
                    for name, d in step.deltas.items():
                        t = fits(name, d.shape)
                        if t is not None:
                            mask = d.mask().to(t.device)
                            journal.append(partial(t.masked_scatter_, mask, t[mask].clone()))
                            t.masked_scatter_(mask, d.values.to(device=t.device, dtype=t.dtype))
            except BaseException:
                for inverse in reversed(journal):
                    inverse()
                raise
            self._steps.clear()
            self._position = 0
            self._current = {}
            self._sync()
            return skipped


def _fingerprint(t: Tensor) -> tuple:
    return (t.data_ptr(), tuple(t.shape), t.dtype, t.device, t._version)


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
