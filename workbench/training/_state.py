"""Model states for training procedures: snapshots, weight swaps for exact undo, mask views, frozen teachers.

A training procedure changes every weight, not only the pruned ones, so its history step carries a `WeightSwap`:
the values of every tensor the step changed, on the other side of the step. Undo and redo exchange them with the
live tensors (`Workbench.undo` / `redo` / `goto` / `reset`), so every state stays reachable bit for bit. It costs
one copy of the changed tensors per training step (on the model's device).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import WorkbenchError
from ..state import as_state

__all__ = ["MaskView", "WeightSwap", "frozen_clone", "named_state", "record", "snapshot", "state_at"]


def named_state(model: nn.Module) -> dict[str, Tensor]:
    """Every parameter and buffer of `model` by name (tied tensors once), as the live tensors."""
    out: dict[str, Tensor] = {}
    seen: set[int] = set()
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        if id(t) not in seen:
            seen.add(id(t))
            out[name] = t
    return out


def snapshot(model: nn.Module) -> dict[str, Tensor]:
    """A copy of every parameter and buffer (the state a procedure starts from)."""
    return {k: v.detach().clone() for k, v in named_state(model).items()}


def _same(a: Tensor, b: Tensor) -> bool:
    if a.is_floating_point():  # bits, so -0.0 vs 0.0 counts as a change
        return torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8))
    return torch.equal(a, b)


def copy_(dst: Tensor, src: Tensor) -> Tensor:
    """``dst.copy_(src)``: the one write a `WeightSwap` makes (a seam for fault-injection tests)."""
    return dst.copy_(src)


class WeightSwap:
    """Values of some of a model's tensors (by name) that `swap_` exchanges with the live ones, bitwise.

    >>> lin = torch.nn.Linear(2, 1)
    >>> before = lin.weight.detach().clone()
    >>> swap = WeightSwap({"weight": torch.zeros(1, 2)})
    >>> swap.swap_(lin); float(lin.weight.detach().abs().sum())
    0.0
    >>> swap.swap_(lin); torch.equal(lin.weight, before)
    True
    """

    def __init__(self, values: Mapping[str, Tensor]):
        self.values = dict(values)

    @torch.no_grad()
    def swap_(self, model: nn.Module) -> None:
        """Exchange the stored values with the live tensors; all or nothing (on an error the tensors exchanged so
        far are exchanged back, and the error propagates)."""
        live = named_state(model)
        missing = [n for n in self.values if n not in live]
        if missing:
            raise WorkbenchError(
                f"the model has no tensor {missing[0]!r} that this training step recorded; was a layer replaced "
                "after training? Re-create the Workbench on the new model."
            )
        done: list[str] = []
        try:
            for name, stored in self.values.items():
                t = live[name].detach()
                tmp = t.clone()
                try:
                    copy_(t, stored)
                except BaseException:
                    t.copy_(tmp)  # a copy stopped half-way: the tensor gets its own values back
                    raise
                self.values[name] = tmp
                done.append(name)
        except BaseException:
            for name in reversed(done):
                t = live[name].detach()
                tmp = t.clone()
                t.copy_(self.values[name])
                self.values[name] = tmp
            raise

    @property
    def nbytes(self) -> int:
        return sum(v.nbytes for v in self.values.values())

    def __repr__(self) -> str:
        return f"WeightSwap({len(self.values)} tensors, {self.nbytes / 2**20:.2f} MiB)"


class MaskView:
    """The store's masks plus the ones a running procedure added, readable like a `MaskStore` by `select`.

    `add_` zeroes the new elements in place (the procedure's start snapshot makes them undoable);
    `enforce_` keeps every masked weight (and its gradient) at zero during training.
    """

    def __init__(self, model: nn.Module, store: Any):
        self.model = model
        self.store = store
        self.extra: dict[str, Tensor] = {}

    def current(self, name: str) -> Tensor | None:
        a, b = self.store.current(name), self.extra.get(name)
        if a is None:
            return b
        return a if b is None else a | b.to(a.device)

    def masks(self) -> dict[str, Tensor]:
        names = set(self.store.masks()) | set(self.extra)
        return {n: self.current(n) for n in names}  # type: ignore[misc]

    @torch.no_grad()
    def add_(self, masks: Mapping[str, Tensor]) -> int:
        """Mask these elements too (True = pruned) and zero them; returns how many were new."""
        new = 0
        for name, m in masks.items():
            p = self.model.get_parameter(name)
            m = m.to(p.device)
            cur = self.current(name)
            fresh = m if cur is None else m & ~cur.to(p.device)
            count = int(fresh.sum())
            new += count
            self.extra[name] = m if name not in self.extra else self.extra[name].to(p.device) | m
            if count:  # masked elements are zero already: write only new ones (a write moves the version counter)
                p.detach().masked_fill_(fresh, 0)
        return new

    @torch.no_grad()
    def enforce_(self, grads: bool = True) -> None:
        for name, mask in self.masks().items():
            p = self.model.get_parameter(name)
            m = mask.to(p.device)
            p.detach().masked_fill_(m, 0)
            if grads and p.grad is not None:
                p.grad.masked_fill_(m, 0)

    def sparsity(self, names: list[str]) -> float:
        total = sum(self.model.get_parameter(n).numel() for n in names)
        pruned = sum(int(m.sum()) for n in names if (m := self.current(n)) is not None)
        return pruned / max(total, 1)


def record(state, before: Mapping[str, Tensor], view: MaskView, *, label: str, kind: str, plan=None, evaluate=True):
    """Record what a procedure did since `before` (a `snapshot`) as one history step of `bench`.

    The live model is put back to `before` for the changed tensors, the new masks are applied through the mask
    store (so their removed values are the ones before the procedure), and a `WeightSwap` puts the trained values
    back in: undo then returns to `before` bitwise and redo to the trained state.
    """
    state = as_state(state)
    model = state.model
    view.enforce_(grads=False)
    live = named_state(model)
    changed = {n: before[n] for n, t in live.items() if not _same(t.detach(), before[n])}
    swap = WeightSwap(changed)
    swap.swap_(model)  # live = before; the swap now holds the trained values
    return state.record(dict(view.extra), label=label, plan=plan, kind=kind, weights=swap, evaluate=evaluate)


def state_at(state, index: int) -> dict[str, Tensor]:
    """Copies of every parameter and buffer as they are in history entry `index`, computed from the store's
    undo data without moving the live model."""
    store = state.store
    n = len(store.steps)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= n:
        raise ValueError(f"history index must be an int in [0, {n}] (0 = dense; see bench.history), got {index!r}")
    values = snapshot(state.model)
    pos = store.position
    with torch.no_grad():
        for i in range(pos - 1, index - 1, -1):  # undo, newest first: swap, then the removed values
            step = store.steps[i]
            swap = step.info.get("weights")
            if swap is not None:
                for k, v in swap.values.items():
                    values[k] = v.clone()
            for name, d in step.deltas.items():
                t = values[name]
                t.masked_scatter_(d.mask().to(t.device), d.values.to(t.device))
        for i in range(pos, index):  # redo, oldest first: zero, then the swap
            step = store.steps[i]
            for name, d in step.deltas.items():
                values[name].masked_fill_(d.mask().to(values[name].device), 0)
            swap = step.info.get("weights")
            if swap is not None:
                for k, v in swap.values.items():
                    values[k] = v.clone()
    return values


def frozen_clone(model: nn.Module, state: Mapping[str, Tensor]) -> nn.Module:
    """A structural copy of `model` (no tensor data copied) whose parameters and buffers are `state`'s tensors,
    frozen and in eval mode: a teacher that training the live model cannot change."""
    live = named_state(model)
    memo: dict[int, Any] = {}
    for name, t in live.items():
        value = state[name]
        memo[id(t)] = nn.Parameter(value, requires_grad=False) if isinstance(t, nn.Parameter) else value
    clone = copy.deepcopy(model, memo)
    return clone.eval()
