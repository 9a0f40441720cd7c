"""Elementwise mask operations that stay fast on 200M-weight models.

With a random half of a tensor masked, the obvious PyTorch calls are branch-bound, not memory-bound.
``python -m benchmarks.maskops`` (2048 x 4096 float32, 2 threads, this project's 2-core CPU) measured:

==========================  =================================  =========  =========  ========
operation                   obvious call                       torch ms   here ms    speed-up
==========================  =================================  =========  =========  ========
zero the masked elements    ``t.masked_fill_(mask, 0)``        22.7       4.4        5.2x
values of masked elements   ``t[mask]``                        61.5       17.0       3.6x
put them back (undo)        ``t.masked_scatter_(mask, v)``     43.8       17.7       2.5x
count non-zeros             ``torch.count_nonzero(t)``         22.5       3.3        6.8x
all elements finite         ``torch.isfinite(t).all()``        21.9       1.3        17.2x
==========================  =================================  =========  =========  ========

Every function equals the obvious call bit for bit (tests/masks/test_fastops.py checks that, -0.0 and
NaN included) and falls back to it for dtypes or devices the trick does not cover.

>>> import torch
>>> w = torch.tensor([[1.5, -2.0], [-0.0, 3.0]])
>>> m = torch.tensor([[True, False], [False, True]])
>>> compress(w, m).tolist(), count_nonzero(w)
([1.5, 3.0], 3)
>>> zero_(w, m).tolist()
[[0.0, -2.0], [-0.0, 0.0]]
"""

from __future__ import annotations

import sys
from typing import Any

import torch
from torch import Tensor

__all__ = ["all_finite", "compress", "count_nonzero", "empty", "scatter_", "scratch", "zero_"]

_INT = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _bits(t: Tensor) -> Tensor | None:
    """The same memory as signed integers of the same width (None for non-float dtypes)."""
    if not t.is_floating_point() or t.element_size() not in _INT or t.dim() == 0:
        return None
    return t.view(_INT[t.element_size()])


_POPULATE_MIN = 8 << 20  # bytes from which `empty` pre-faults its pages
_MADV_POPULATE_WRITE = 23  # Linux 5.14+; the mmap module has no name for it before Python 3.13


def empty(n: int, dtype: torch.dtype, device: torch.device | str = "cpu") -> Tensor:
    """``torch.empty(n, dtype=dtype, device=device)``. On the CPU, a large one is anonymous memory whose pages are all faulted in by
    one ``madvise(MADV_POPULATE_WRITE)`` before anything writes to it. The store's outputs (undo values, masks) are
    written by numpy's compress on two threads, and how their pages first get touched decided the store's time on
    the 201M benchmark stack (interleaved runs, this project's VM): 0.49 s pre-faulted like this, 0.55 s from
    ``torch.zeros``, 0.91 s from ``np.empty`` (numpy asks for transparent huge pages, whose first touch stalls on
    this kernel), 1.8 s from ``torch.empty``. Where the call is missing (another OS, an older kernel, the mapping
    budget spent) it is a plain ``torch.empty``."""
    nbytes = n * torch.empty((), dtype=dtype).element_size()
    cpu = torch.device(device).type == "cpu"
    if cpu and nbytes >= _POPULATE_MIN and sys.platform == "linux" and _LIVE[0] < _MAX_MAPPINGS:
        import mmap
        import weakref

        try:
            m = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            m.madvise(_MADV_POPULATE_WRITE)
        except (OSError, ValueError, AttributeError):
            pass
        else:
            t = torch.frombuffer(m, dtype=dtype)  # the tensor keeps the mapping alive; unmapped with it
            _LIVE[0] += 1
            weakref.finalize(t, _unmapped)
            return t
    return torch.empty(n, dtype=dtype, device=device)


_LIVE = [0]  # mappings `empty` made that are still alive: each is one of the process's vm.max_map_count (65,530)
_MAX_MAPPINGS = 4096  # beyond this, plain allocations, so other code never runs out of mappings because of us


def _unmapped() -> None:
    _LIVE[0] -= 1


def scratch(sizes, dtype: torch.dtype) -> dict[torch.device, Tensor]:
    """One uninitialised buffer per device, as long as the largest of `sizes` ((device, numel) pairs) there, for
    code that fills it for one tensor after another (slice and view it to each tensor's shape)."""
    longest: dict[torch.device, int] = {}
    for device, n in sizes:
        longest[device] = max(longest.get(device, 0), n)
    return {d: torch.empty(n, dtype=dtype, device=d) for d, n in longest.items()}


_CHUNK = 1 << 20  # elements per AND: its scratch (5 MB) is reused, so no fresh memory per tensor


def zero_(t: Tensor, mask: Tensor) -> Tensor:
    """``t.masked_fill_(mask, 0)`` (writes +0.0), as an AND of `t`'s bits with 0 where `mask` is True and all
    ones elsewhere: branch-free, so a random mask costs what a dense pass costs."""
    bits = _bits(t)
    if (
        bits is None
        or mask.shape != t.shape
        or mask.device != t.device
        or not (t.is_contiguous() and mask.is_contiguous())
    ):
        return t.masked_fill_(mask, 0)
    flat, m = bits.view(-1), mask.view(-1).view(torch.uint8)
    n = flat.numel()
    keep8 = torch.empty(min(n, _CHUNK), dtype=torch.uint8, device=t.device)
    keep = torch.empty(min(n, _CHUNK), dtype=bits.dtype, device=t.device)
    for i in range(0, n, _CHUNK):
        j = min(n, i + _CHUNK)
        torch.sub(m[i:j], 1, out=keep8[: j - i])  # False -> 255, True -> 0
        keep[: j - i].copy_(keep8[: j - i].view(torch.int8))  # 255 as int8 is -1: sign-extends to all ones
        flat[i:j].bitwise_and_(keep[: j - i])
    return t


def count_nonzero(t: Tensor) -> int:
    """``int(torch.count_nonzero(t))``. For floats it counts non-zero bit patterns (an integer count is
    vectorised, the float one is not) after checking that no -0.0 is among them: -0.0 is the one float whose
    bits are the smallest integer of that width, so the bits' minimum says whether to count the slow way."""
    bits = _bits(t)
    if bits is None:
        return int(torch.count_nonzero(t))
    if t.numel() and int(bits.min()) == torch.iinfo(bits.dtype).min:  # a -0.0 somewhere
        return int(torch.count_nonzero(t))
    return int(torch.count_nonzero(bits))


_POOL: dict[int, Any] = {}  # one thread pool per process (a forked child gets its own): numpy releases the GIL


def _pool():
    import os

    pid = os.getpid()
    if pid not in _POOL:
        from concurrent.futures import ThreadPoolExecutor

        _POOL.clear()  # an inherited pool's threads did not survive the fork
        _POOL[pid] = ThreadPoolExecutor(max(1, min(4, torch.get_num_threads())), thread_name_prefix="wb-compress")
    return _POOL[pid]


def compress(t: Tensor, mask: Tensor) -> Tensor:
    """``t[mask]``: the masked elements in row-major order. On CPU through numpy's ``compress``, 1M elements
    at a time on as many threads as torch uses: numpy builds an index of the chosen elements first, and a
    chunk's index is reused memory while a whole tensor's would be fresh pages (which cost more than the
    copy itself on a large model here)."""
    fast = t.device.type == mask.device.type == "cpu" and t.dtype in (torch.float32, torch.float64, torch.float16)
    if not (fast and mask.shape == t.shape):
        return t.detach()[mask]
    import numpy as np

    flat, m = t.detach().reshape(-1).numpy(), mask.reshape(-1)
    starts = range(0, flat.size, _CHUNK)
    counts = [int(torch.count_nonzero(m[i : i + _CHUNK])) for i in starts]
    offsets = np.cumsum([0, *counts]).tolist()
    out = empty(offsets[-1], t.dtype).numpy()

    def part(j: int) -> None:
        i = starts[j]
        np.compress(m[i : i + _CHUNK].numpy(), flat[i : i + _CHUNK], out=out[offsets[j] : offsets[j + 1]])

    if len(counts) > 1 and torch.get_num_threads() > 1:
        list(_pool().map(part, range(len(counts))))
    else:
        for j in range(len(counts)):
            part(j)
    return torch.from_numpy(out)


def scatter_(t: Tensor, mask: Tensor, values: Tensor) -> Tensor:
    """``t.masked_scatter_(mask, values)``: the masked elements of `t` (row-major) get `values` in order, the
    inverse of `compress`. On CPU, 1M elements at a time: numpy's ``flatnonzero`` of a chunk's mask, then one
    indexed assignment."""
    fast = t.device.type == mask.device.type == values.device.type == "cpu"
    fast = fast and t.dtype in (torch.float32, torch.float64, torch.float16) and values.dtype == t.dtype
    if not (fast and mask.shape == t.shape and t.is_contiguous()):
        return t.masked_scatter_(mask, values.to(t.device))
    import numpy as np

    flat, m, v = t.detach().view(-1).numpy(), mask.reshape(-1), values.detach().reshape(-1).numpy()
    start = 0
    for i in range(0, flat.size, _CHUNK):
        idx = np.flatnonzero(m[i : i + _CHUNK].numpy())
        flat[i : i + _CHUNK][idx] = v[start : start + idx.size]
        start += idx.size
    if start != v.size:
        raise ValueError(f"{v.size} values for {start} masked elements")
    return t


def all_finite(t: Tensor) -> bool:
    """Whether no element is NaN or ±inf. A finite sum proves it (NaN and inf propagate); an infinite one may
    be an overflow of finite values, so only then are the elements checked one by one."""
    if not t.is_floating_point() or not t.numel():
        return True
    acc = t.detach().sum(dtype=torch.float32 if t.element_size() < 4 else None)  # half types: a float32 sum
    if bool(torch.isfinite(acc)):
        return True
    return bool(torch.isfinite(t.detach()).all())
