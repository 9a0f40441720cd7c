"""What one step writes to the tensors: zeroing what it prunes (keeping the values), writing those values back, zeroing
them again, and taking a change already written as a step. Each function updates `current` (the masks of the applied
steps, by parameter name) and registers every write's inverse in `journal` before making it, so `MaskStore` can roll
the model back on any error; the store holds its lock and Ctrl-C meanwhile. Which steps exist, in what order and
which are applied is the store's business, not this module's.

>>> import torch
>>> w = torch.tensor([[1.0, -2.0], [3.0, 0.5]])
>>> current, journal = {}, []
>>> deltas = prune_new({"w": w}, {"w": w.abs() < 1.5}, current, journal)
>>> w.tolist(), deltas["w"].values.tolist()
([[0.0, -2.0], [3.0, 0.0]], [1.0, 0.5])
>>> write_back({"w": w}.__getitem__, deltas, current, journal); w.tolist(), current
([[1.0, -2.0], [3.0, 0.5]], {})
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from torch import Tensor

from ._packed import _Delta, _pack
from .fastops import compress, count_nonzero, scatter_, zero_

__all__ = ["prune_again", "prune_new", "taken_as_written", "write_back"]

Journal = list[Callable[[], Any]]


def prune_new(
    params: Mapping[str, Tensor], masks: Mapping[str, Tensor], current: dict[str, Tensor], journal: Journal
) -> dict[str, _Delta]:
    """Zero the elements flagged True in `masks` that `current` does not hold yet; returns, per parameter, which
    ones and their values before (what undo writes back). Elements already pruned are not recorded again."""
    deltas: dict[str, _Delta] = {}
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
    return deltas


def write_back(
    param: Callable[[str], Tensor], deltas: Mapping[str, _Delta], current: dict[str, Tensor], journal: Journal
) -> None:
    """Undo: the values `deltas` removed go back where they were (bitwise); `current` no longer holds them."""
    for name, d in deltas.items():
        p = param(name).detach()
        mask = d.mask().to(p.device)
        journal.append(partial(zero_, p, mask))  # the pruned elements were +0.0 (zero_ writes +0.0)
        scatter_(p, mask, d.values.to(p.device))
        cur = current[name] & ~mask
        if count_nonzero(cur):
            current[name] = cur
        else:
            del current[name]


def prune_again(
    param: Callable[[str], Tensor], deltas: Mapping[str, _Delta], current: dict[str, Tensor], journal: Journal
) -> None:
    """Redo: zero again what `deltas` removed; `current` holds it again."""
    for name, d in deltas.items():
        p = param(name).detach()
        mask = d.mask().to(p.device)
        values = d.values.to(p.device)
        journal.append(partial(scatter_, p, mask, values))
        zero_(p, mask)
        cur = current.get(name)
        current[name] = mask if cur is None else cur | mask


def taken_as_written(
    param: Callable[[str], Tensor],
    masks: Mapping[str, Tensor],
    before: Mapping[str, Tensor],
    current: dict[str, Tensor],
) -> dict[str, _Delta]:
    """A change already written, as a step: per parameter, the elements `masks` flags that `current` does not hold
    yet, with their values from `before` (``p[mask]`` before the change); nothing is written. The store checks each
    mask first (`workbench.masks._edits.check_written`)."""
    deltas: dict[str, _Delta] = {}
    for name, mask in masks.items():
        p = param(name).detach()
        new = mask.to(p.device)
        cur = current.get(name)
        values = before[name].to(p.device)
        if cur is not None:
            values, new = values[~cur[new]], new & ~cur  # what the applied steps hold is theirs
        if not count_nonzero(new):
            continue
        deltas[name] = _Delta(_pack(new), values.to(p.dtype), p.shape)
        current[name] = new if cur is None else cur | new
    return deltas
