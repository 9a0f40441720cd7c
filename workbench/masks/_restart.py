"""New starting points for a `MaskStore` after edits behind its back: `adopt` (keep the weights as they are) and
`force_reset` (write the recorded dense values back). Both clear the history; the store's methods `adopt_` and
`force_reset_` call them under its lock."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .fastops import count_nonzero

if TYPE_CHECKING:
    from .store import MaskStore


def adopt(store: MaskStore, masks: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
    """See `MaskStore.adopt_`."""
    base: dict[str, Tensor] = {}
    params = dict(store.model.named_parameters())
    held = store.masks()
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
    store._restart(base)
    return dict(base)


@torch.no_grad()
def force_reset(store: MaskStore) -> list[str]:
    """See `MaskStore.force_reset_`."""
    model = store.model
    named = {**dict(model.named_buffers()), **dict(model.named_parameters())}
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
        for step in reversed(store.steps[: store.position]):
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
    store._restart({})
    return skipped
