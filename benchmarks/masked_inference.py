"""Masked inference: a model pruned by the workbench runs at dense speed; `torch.nn.utils.prune` does not.

The workbench zeroes weights in place and leaves a plain module, so inference costs what dense inference
costs. `torch.nn.utils.prune` keeps ``weight_orig`` and ``weight_mask`` and recomputes
``weight = weight_orig * mask`` in a forward pre-hook on every call. Both sides prune 50% of the weights by
global magnitude from the same scores, and the benchmark first checks that they produce the same outputs.

Run: ``.venv/bin/python -m benchmarks.masked_inference`` (about a minute on 2 cores).
"""

from __future__ import annotations

import copy
import os
import statistics
import sys
import time
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import prune
from torch.utils import benchmark

import workbench as wb

THREADS = 2
RATIO = 0.5
ROUNDS = 5  # interleaved rounds; each takes the median of one blocked_autorange per model
MIN_RUN_TIME = 0.2  # seconds per blocked_autorange


@dataclass
class Case:
    name: str
    sizes: str
    model: nn.Module
    x: torch.Tensor


def _mlp(width: int, depth: int) -> nn.Module:
    layers: list[nn.Module] = []
    for i in range(depth):
        layers.append(nn.Linear(width, width))
        if i < depth - 1:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers).eval()


def _cases() -> list[Case]:
    torch.manual_seed(0)
    cnn, data = wb.demo.load("digits-cnn")
    x = torch.cat([xb for xb, _ in data.val])
    x = torch.cat([x] * (256 // len(x) + 1))[:256]
    cases = [Case("digits-cnn", f"{_params(cnn):,} params, batch {len(x)}x1x8x8", cnn, x)]
    for width, depth in ((1024, 4), (4096, 3)):
        mlp = _mlp(width, depth)
        cases.append(
            Case(
                f"MLP {depth}x{width}",
                f"{depth} x Linear({width},{width}), {_params(mlp):,} params, batch 64",
                mlp,
                torch.randn(64, width),
            )
        )
    return cases


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _prunable(model: nn.Module) -> list[tuple[nn.Module, str]]:
    return [(m, "weight") for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def _prepare(case: Case) -> tuple[dict[str, nn.Module], dict[str, float]]:
    """Dense, workbench-pruned and prune-hooked copies of the case's model; checks they agree."""
    dense = case.model
    ours = copy.deepcopy(dense)
    t0 = time.perf_counter()
    bench = wb.Workbench(ours, [(case.x[:8], torch.zeros(8, dtype=torch.long))])
    bench.apply(wb.Plan.global_(RATIO, criterion="magnitude"), evaluate=False)
    t_ours = time.perf_counter() - t0

    hooked = copy.deepcopy(dense)
    t0 = time.perf_counter()
    prune.global_unstructured(_prunable(hooked), pruning_method=prune.L1Unstructured, amount=RATIO)
    t_hooks = time.perf_counter() - t0

    # the same masks: weights zeroed by the workbench == weight_mask zeros of torch.nn.utils.prune
    for (m_ours, _), (m_hook, _) in zip(_prunable(ours), _prunable(hooked), strict=True):
        ours_zero = m_ours.weight == 0
        hook_zero = m_hook.weight_mask == 0
        differ = int((ours_zero != hook_zero).sum())
        assert differ == 0, f"{case.name}: masks differ in {differ} weights"
    with torch.inference_mode():
        y_ours, y_hook = ours(case.x), hooked(case.x)
    assert torch.allclose(y_ours, y_hook, atol=1e-5), (
        f"{case.name}: outputs differ by {(y_ours - y_hook).abs().max().item():.3g}"
    )
    hooks_left = sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in ours.modules())
    assert hooks_left == 0, f"{case.name}: the workbench left {hooks_left} hooks on the model"
    return {"dense": dense, "workbench": ours, "prune-hooks": hooked}, {"workbench": t_ours, "prune": t_hooks}


def _time(models: dict[str, nn.Module], x: torch.Tensor) -> dict[str, float]:
    """Median forward time in ms per model, interleaved over ROUNDS rounds after a warm-up."""
    timers = {
        k: benchmark.Timer("m(x)", globals={"m": m, "x": x}, num_threads=THREADS, label=k) for k, m in models.items()
    }
    samples: dict[str, list[float]] = {k: [] for k in models}
    with torch.inference_mode():
        for m in models.values():  # warm-up
            for _ in range(3):
                m(x)
        names = list(models)
        for r in range(ROUNDS):
            for k in names[r % len(names) :] + names[: r % len(names)]:  # rotate the order each round
                samples[k].append(timers[k].blocked_autorange(min_run_time=MIN_RUN_TIME).median * 1e3)
    return {k: statistics.median(v) for k, v in samples.items()}


def main() -> int:
    torch.set_num_threads(THREADS)
    start = time.perf_counter()
    load = os.getloadavg()[0]
    if load > 0.5:
        print(
            f"warning: the machine is busy (load average {load:.1f} before starting); with {THREADS} threads on "
            f"{os.cpu_count()} CPUs other processes distort these timings: rerun when it is idle"
        )
    rows = []
    for case in _cases():
        models, setup = _prepare(case)
        ms = _time(models, case.x)
        rows.append((case, ms, setup))
        del models
    header = ("case", "sizes", "dense ms", "workbench ms", "prune-hooks ms", "workbench/dense", "hooks/dense")
    table = [header]
    for case, ms, _ in rows:
        d, o, h = ms["dense"], ms["workbench"], ms["prune-hooks"]
        table.append((case.name, case.sizes, f"{d:.3f}", f"{o:.3f}", f"{h:.3f}", f"{o / d:.2f}x", f"{h / d:.2f}x"))
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    print(
        f"masked inference, {RATIO:.0%} global magnitude pruning; torch {torch.__version__}, "
        f"torch.set_num_threads({THREADS}); median of {ROUNDS} interleaved blocked_autorange runs; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end"
    )
    print("outputs checked first: workbench == torch.nn.utils.prune (same masks, allclose atol 1e-5)")
    for i, r in enumerate(table):
        print(" | ".join(c.ljust(w) if j < 2 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths, strict=True))))
        if i == 0:
            print("-+-".join("-" * w for w in widths))
    print(
        "\nselection time (s): "
        + "; ".join(f"{c.name}: workbench {s['workbench']:.2f}, prune {s['prune']:.2f}" for c, _, s in rows)
    )
    print(f"total {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
