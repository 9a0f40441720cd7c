"""The elementwise mask operations of `workbench.masks.fastops` against the obvious PyTorch calls.

One 2048 x 4096 float32 tensor (a layer of the 201M benchmark stack) with a random half masked, as a global
magnitude plan leaves it; each pair is checked bit for bit before it is timed; median of 7 interleaved
runs, same process, torch threads as set below. Times include fresh memory for outputs, as in the store.

Run: ``.venv/bin/python -m benchmarks.maskops`` (about 10 s).
"""

from __future__ import annotations

import os
import statistics
import time

import torch

from workbench.masks import fastops

THREADS = 2
RUNS = 7


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.int32) if t.dtype == torch.float32 else t


def main() -> int:
    torch.set_num_threads(THREADS)
    g = torch.Generator().manual_seed(0)
    w = torch.randn(2048, 4096, generator=g)
    mask = torch.rand(w.shape, generator=g) < 0.5
    pruned = w.clone().masked_fill_(mask, 0)
    values = w[mask]
    cases = [  # name, torch, fastops, input, whether it writes the input (then each run gets a fresh copy)
        ("zero masked elements", lambda x: x.masked_fill_(mask, 0), lambda x: fastops.zero_(x, mask), w, True),
        ("values of masked elements", lambda x: x[mask], lambda x: fastops.compress(x, mask), w, False),
        (
            "put them back (undo)",
            lambda x: x.masked_scatter_(mask, values),
            lambda x: fastops.scatter_(x, mask, values),
            pruned,
            True,
        ),
        ("count non-zeros (pruned)", lambda x: int(torch.count_nonzero(x)), fastops.count_nonzero, pruned, False),
        ("all finite", lambda x: bool(torch.isfinite(x).all()), fastops.all_finite, w, False),
    ]
    print(
        f"fastops vs the obvious torch call; 2048x4096 float32, half masked at random; torch {torch.__version__}, "
        f"{THREADS} threads, median of {RUNS} interleaved runs; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )
    print(f"{'operation':28s} | {'torch ms':>9s} | {'fastops ms':>10s} | {'speed-up':>8s}")
    for name, slow, fast, src, inplace in cases:
        a, b = slow(src.clone()), fast(src.clone())
        same = torch.equal(_bits(a), _bits(b)) if isinstance(a, torch.Tensor) else a == b
        assert same, f"{name}: fastops differs from torch"
        times: dict[str, list[float]] = {"slow": [], "fast": []}
        for _ in range(RUNS):
            for key, fn in (("slow", slow), ("fast", fast)):
                x = src.clone() if inplace else src
                t0 = time.perf_counter()
                fn(x)
                times[key].append(time.perf_counter() - t0)
        s, f = (statistics.median(times[k]) * 1e3 for k in ("slow", "fast"))
        print(f"{name:28s} | {s:9.1f} | {f:10.1f} | {s / f:7.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
