"""Latency of callables, measured side by side: warm up, size blocks to a minimum duration, interleave
the candidates over `repeats` rounds and take each one's median (see ../shared/BENCHMARKS.md).

>>> import torch
>>> ms = measure({"a": lambda: torch.ones(8).sum(), "b": lambda: torch.ones(8).sum()}, repeats=3)
>>> sorted(ms) == ["a", "b"] and all(v > 0 for v in ms.values())
True
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

__all__ = ["measure"]


def _sync(device: torch.device | None) -> None:
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    fns: dict[str, Callable[[], object]],
    *,
    repeats: int = 7,
    min_block_s: float = 0.002,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """Median milliseconds per call of each callable, measured in interleaved blocks."""
    dev = torch.device(device) if device is not None else None
    numbers: dict[str, int] = {}
    for name, fn in fns.items():
        fn()
        fn()
        _sync(dev)
        n, elapsed = 1, 0.0
        while True:
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            _sync(dev)
            elapsed = time.perf_counter() - t0
            if elapsed >= min_block_s or n >= 1 << 14:
                break
            n = min(n * max(2, int(min_block_s / max(elapsed, 1e-7))), 1 << 14)
        numbers[name] = n
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            n = numbers[name]
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            _sync(dev)
            samples[name].append((time.perf_counter() - t0) / n * 1e3)
    return {k: statistics.median(v) for k, v in samples.items()}
