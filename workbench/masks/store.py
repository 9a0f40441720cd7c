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

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import WorkbenchError
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
    """Records in-place pruning steps on `model` and undoes/redoes them bitwise.

    A step whose ``info["weights"]`` holds a swap (an object with ``swap_(model)``, recorded by a training
    procedure) also exchanges those weights on undo and redo, so every way of moving (undo, redo, goto, reset)
    reaches the trained or the pre-training values exactly.

    Steps form a linear history: `apply_` after `undo_` drops the steps that could have been redone.
    Parameters are looked up by name on every call, so the store never holds a stale tensor.
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self._steps: list[Step] = []
        self._position = 0
        self._current: dict[str, Tensor] = {}

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

    # changes -----------------------------------------------------------------------------------
    @torch.no_grad()
    def apply_(self, masks: Mapping[str, Tensor], info: Mapping[str, Any] | None = None) -> Step:
        """Zero the elements flagged True in `masks` (by full parameter name) and record a step.

        Elements that are already pruned are not recorded again. Raises before changing anything if a
        mask does not fit its parameter.
        """
        params = {}
        for name, mask in masks.items():
            p = self._param(name)
            if mask.shape != p.shape or mask.dtype != torch.bool:
                raise WorkbenchError(
                    f"mask for {name!r} must be a bool tensor of shape {tuple(p.shape)}, "
                    f"got {mask.dtype} {tuple(mask.shape)}"
                )
            params[name] = p
        deltas: dict[str, _Delta] = {}
        for name, mask in masks.items():
            p = params[name]
            new = mask.to(p.device)
            cur = self._current.get(name)
            if cur is not None:
                new = new & ~cur
            if not count_nonzero(new):
                continue
            deltas[name] = _Delta(_pack(new), compress(p, new), p.shape)
            zero_(p.detach(), new)
            self._current[name] = new if cur is None else cur | new
        del self._steps[self._position :]
        step = Step(deltas, dict(info or {}))
        self._steps.append(step)
        self._position += 1
        return step

    @torch.no_grad()
    def undo_(self) -> Step:
        """Restore the bits the last applied step removed."""
        if self._position == 0:
            raise WorkbenchError("nothing to undo: no pruning step is applied")
        step = self._steps[self._position - 1]
        swap = step.info.get("weights")
        if swap is not None:  # a training step: put the weights from before training back first
            swap.swap_(self.model)
        for name, d in step.deltas.items():
            p = self._param(name)
            mask = d.mask().to(p.device)
            scatter_(p.detach(), mask, d.values.to(p.device))
            cur = self._current[name] & ~mask
            if count_nonzero(cur):
                self._current[name] = cur
            else:
                del self._current[name]
        self._position -= 1
        return step

    @torch.no_grad()
    def redo_(self) -> Step:
        """Zero again what the next undone step removed."""
        if self._position >= len(self._steps):
            raise WorkbenchError("nothing to redo: no undone step follows the current one")
        step = self._steps[self._position]
        for name, d in step.deltas.items():
            p = self._param(name)
            mask = d.mask().to(p.device)
            zero_(p.detach(), mask)
            cur = self._current.get(name)
            self._current[name] = mask if cur is None else cur | mask
        swap = step.info.get("weights")
        if swap is not None:  # a training step: its trained weights come back after the zeros
            swap.swap_(self.model)
        self._position += 1
        return step

    def reset_(self) -> None:
        """Undo every applied step (they stay redoable)."""
        while self._position:
            self.undo_()

    def goto_(self, position: int) -> None:
        """Undo or redo until exactly `position` steps are applied."""
        if not 0 <= position <= len(self._steps):
            raise WorkbenchError(f"history position must be in [0, {len(self._steps)}], got {position}")
        while self._position > position:
            self.undo_()
        while self._position < position:
            self.redo_()


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
