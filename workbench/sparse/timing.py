"""The one latency timer of the workbench: warm up, size blocks to a minimum duration, interleave the candidates
over `repeats` rounds and take each one's median (see ../shared/BENCHMARKS.md).

`clock` picks what is measured: ``"wall"`` (`time.perf_counter`, what a user waits for; CUDA work is synchronized
before each reading) or ``"cpu"`` (`time.process_time` on one thread: other programs on a shared machine do not add
to this process's CPU time, so a busy machine distorts it less). `samples` gives every round's reading (for ratios
measured round by round), `measure` their medians; `before` runs untimed before each block of one callable (e.g. to
move a live model to the state it is timed in).

>>> import torch
>>> ms = measure({"a": lambda: torch.ones(8).sum(), "b": lambda: torch.ones(8).sum()}, repeats=3)
>>> sorted(ms) == ["a", "b"] and all(v > 0 for v in ms.values())
True
>>> cpu = measure({"a": lambda: torch.ones(8).sum()}, repeats=3, clock="cpu")
>>> cpu["a"] >= 0
True
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch

__all__ = ["CLOCKS", "measure", "median_ms", "samples"]

CLOCKS = ("wall", "cpu")


def _sync(device: torch.device | None) -> None:
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def _block_s(fn: Callable[[], object], n: int, clock: Callable[[], float], dev: torch.device | None) -> float:
    """Seconds for `n` back-to-back calls of `fn` (and the device's queue to drain)."""
    t0 = clock()
    for _ in range(n):
        fn()
    _sync(dev)
    return clock() - t0


def samples(
    fns: Mapping[str, Callable[[], object]],
    *,
    repeats: int = 7,
    min_block_s: float = 0.002,
    max_calls: int = 1 << 14,
    warmup: int = 2,
    grow: str = "scale",
    clock: str = "wall",
    device: torch.device | str | None = None,
    before: Mapping[str, Callable[[], object]] | None = None,
) -> dict[str, list[float]]:
    """Milliseconds per call of each callable in each of `repeats` interleaved rounds.

    Each callable is called `warmup` times, then its block size is grown (``grow="scale"``: by the factor the last
    block fell short of `min_block_s`, at least 2; ``"double"``) until one block takes `min_block_s` or `max_calls`
    calls; ``min_block_s=0`` times single calls. With ``clock="cpu"`` torch runs on one thread while timing.

    >>> s = samples({"a": lambda: None}, repeats=4, min_block_s=0)
    >>> len(s["a"])
    4
    """
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {CLOCKS}, got {clock!r}")
    if grow not in ("scale", "double"):
        raise ValueError(f"grow must be 'scale' or 'double', got {grow!r}")
    dev = torch.device(device) if device is not None else None
    now = time.process_time if clock == "cpu" else time.perf_counter
    before = before or {}
    threads = torch.get_num_threads()
    if clock == "cpu":
        torch.set_num_threads(1)
    try:
        numbers: dict[str, int] = {}
        for name, fn in fns.items():
            if name in before:
                before[name]()
            for _ in range(warmup):
                fn()
            _sync(dev)
            n = 1
            while True:
                elapsed = _block_s(fn, n, now, dev)
                if elapsed >= min_block_s or n >= max_calls:
                    break
                factor = 2 if grow == "double" else max(2, int(min_block_s / max(elapsed, 1e-7)))
                n = min(n * factor, max_calls)
            numbers[name] = n
        out: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(repeats):
            for name, fn in fns.items():
                if name in before:
                    before[name]()
                out[name].append(_block_s(fn, numbers[name], now, dev) / numbers[name] * 1e3)
    finally:
        if clock == "cpu":
            torch.set_num_threads(threads)
    return out


def measure(
    fns: Mapping[str, Callable[[], object]],
    *,
    repeats: int = 7,
    min_block_s: float = 0.002,
    device: torch.device | str | None = None,
    clock: str = "wall",
    **options: Any,
) -> dict[str, float]:
    """Median milliseconds per call of each callable, measured in interleaved blocks (options: see `samples`)."""
    got = samples(fns, repeats=repeats, min_block_s=min_block_s, device=device, clock=clock, **options)
    return {k: statistics.median(v) for k, v in got.items()}


def median_ms(fn: Callable[[], object], repeats: int, *, clock: str = "wall", **options: Any) -> float:
    """Median milliseconds of `repeats` single calls of `fn` after two warm-up calls and the one call that finds
    the block size is 1 (one callable, no blocks).

    >>> calls = []
    >>> ms = median_ms(lambda: calls.append(1), 3)
    >>> len(calls)
    6
    """
    return measure({"fn": fn}, repeats=repeats, min_block_s=0.0, clock=clock, **options)["fn"]
