"""Packed masks and the record of one step: what the mask store keeps per pruned tensor (1/8 byte per element of a
touched tensor for the mask, plus the removed values), and the fingerprint it notes of every tensor it wrote."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .fastops import empty

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


def _fingerprint(t: Tensor) -> tuple:
    return (t.data_ptr(), tuple(t.shape), t.dtype, t.device, t._version)
