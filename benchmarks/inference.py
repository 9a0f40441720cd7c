"""Inference speed of a pruned model: dense, `prune`-hooked, masked in place, each compiled backend, `auto`.

Per sparsity (50, 75, 90, 95, 99% of weights, global magnitude), on a Linear stack (4 x Linear(1024, 1024),
batch 64) and on the `digits-cnn` demo (batch 64): the same weights run as the dense model, with
`torch.nn.utils.prune`'s forward pre-hooks (`custom_from_mask` with the same masks), masked in place by the workbench, and compiled by
`wb.sparse.compile` with each CPU backend (``shrink``, ``csr``) and with ``auto``. Every variant's outputs are
checked against the masked model (allclose, atol 1e-5) before it is timed. Speed-ups are dense time over the
variant's time, measured interleaved in the same run (`workbench.sparse.timing.measure`: median of 11 rounds of
blocks of at least 20 ms). "raw csr" is `torch.sparse.mm(W_csr, x.T).T` vs `F.linear` on the stack's first
layer alone, the ceiling for the ``csr`` backend.

Run: ``.venv/bin/python -m benchmarks.inference`` (about 2 minutes on 2 cores).
``--device cuda`` runs the same on a GPU and adds ``bsr`` (block32x32 pruning) and ``semi_structured``
(2:4, fp16, 4096 x 4096 Linear at batch 2048; the goal there is >= 1.2x on an H100).
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
import warnings

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

import workbench as wb
from workbench.sparse.timing import measure

THREADS = 2
SPARSITIES = (0.5, 0.75, 0.9, 0.95, 0.99)
BATCH = 64
REPEATS = 11
MIN_BLOCK_S = 0.02


def _stack(width: int = 1024, depth: int = 4) -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for i in range(depth):
        layers.append(nn.Linear(width, width))
        if i < depth - 1:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers).eval()


def _cases(device: torch.device) -> list[tuple[str, str, nn.Module, torch.Tensor]]:
    torch.manual_seed(0)
    cnn, data = wb.demo.load("digits-cnn")
    x = torch.cat([xb for xb, _ in data.val])[:BATCH]
    return [
        (
            "Linear stack",
            f"4 x Linear(1024, 1024), batch {BATCH}",
            _stack().to(device),
            torch.randn(BATCH, 1024, device=device),
        ),
        (
            "digits-cnn",
            f"{sum(p.numel() for p in cnn.parameters()):,} params, batch {BATCH}x1x8x8",
            cnn.to(device),
            x.to(device),
        ),
    ]


def _prunable(model: nn.Module) -> list[tuple[nn.Module, str]]:
    return [(m, "weight") for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def _raw_csr(w: torch.Tensor, x: torch.Tensor, device: torch.device) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wc = w.to_sparse_csr()
    with torch.inference_mode():
        t = measure(
            {"dense": lambda: F.linear(x, w), "csr": lambda: torch.sparse.mm(wc, x.t()).t()},
            repeats=REPEATS,
            min_block_s=MIN_BLOCK_S,
            device=device,
        )
    return t["dense"] / t["csr"]


def _row(name: str, model: nn.Module, x: torch.Tensor, sparsity: float, device: torch.device) -> dict:
    masked = copy.deepcopy(model)
    bench = wb.Workbench(masked, [(x, torch.zeros(len(x), dtype=torch.long, device=device))])
    bench.apply(
        wb.Plan.global_(
            sparsity, include=[n for n, m in masked.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
        ),
        evaluate=False,
    )
    hooked = copy.deepcopy(model)  # the workbench's masks, applied by prune's hooks (prune breaks ties otherwise)
    for (m, _), (mm, _) in zip(_prunable(hooked), _prunable(masked)):
        prune.custom_from_mask(m, "weight", mask=mm.weight != 0)
    variants: dict[str, nn.Module] = {"dense": model, "prune-hooks": hooked, "masked": masked}
    chose = ""
    for backend in ("shrink", "csr", "auto"):
        try:
            fast, rep = wb.sparse.compile(bench, backend=backend, batch_size=len(x), repeats=5)
        except wb.sparse.CompileError as e:
            print(f"  {name} {sparsity:.0%} {backend}: {e}")
            continue
        variants[backend] = fast
        if backend == "auto":
            chose = ",".join(sorted({r.chosen for r in rep.layers})) + ("+shrink" if rep.removed_channels else "")
    with torch.inference_mode():
        want = masked(x)
        for k, m in variants.items():
            if k != "dense":
                got = m(x)
                assert torch.allclose(got, want, atol=1e-5, rtol=1e-5), (
                    f"{name} {sparsity}: {k} differs by {(got - want).abs().max():.2e}"
                )
        fns = {k: (lambda m=m: m(x)) for k, m in variants.items()}
        measure(fns, repeats=3, min_block_s=0.05, device=device)  # warm-up
        t = measure(fns, repeats=REPEATS, min_block_s=MIN_BLOCK_S, device=device)
    raw = _raw_csr(masked[0].weight.detach(), x, device) if name == "Linear stack" else None
    return {"t": t, "chose": chose, "raw": raw}


def _semi_structured_case(device: torch.device) -> str:
    """2:4 on CUDA: a 4096 x 4096 fp16 Linear at batch 2048, dense vs semi_structured."""
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Linear(4096, 4096)).to(device).half().eval()
    x = torch.randn(2048, 4096, device=device, dtype=torch.float16)
    bench = wb.Workbench(lin, [(x[:64], torch.zeros(64, dtype=torch.long, device=device))])
    bench.apply(wb.Plan.uniform(0.5, granularity="2:4"), evaluate=False)
    rep = wb.sparse.compile(bench, backend="semi_structured", batch_size=2048, repeats=REPEATS).report
    return f"2:4 semi_structured, 4096x4096 fp16, batch 2048: dense {rep.dense_ms:.3f} ms -> {rep.compiled_ms:.3f} ms ({rep.speedup:.2f}x)"


def _bsr_case(device: torch.device) -> str:
    torch.manual_seed(0)
    model = _stack(4096, 2).to(device)
    x = torch.randn(2048, 4096, device=device)
    bench = wb.Workbench(model, [(x[:64], torch.zeros(64, dtype=torch.long, device=device))])
    bench.apply(wb.Plan.uniform(0.9, granularity="block32x32"), evaluate=False)
    rep = wb.sparse.compile(bench, backend="bsr", batch_size=2048, repeats=REPEATS).report
    return f"bsr, 2 x Linear(4096, 4096) 90% block32x32, batch 2048: dense {rep.dense_ms:.3f} ms -> {rep.compiled_ms:.3f} ms ({rep.speedup:.2f}x)"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(THREADS)
    start = time.perf_counter()
    warnings.simplefilter("ignore")
    cols = ("prune-hooks", "masked", "shrink", "csr", "auto")
    header = ("case", "sparsity", "dense ms", *(f"{c} x" for c in cols), "raw csr x", "auto chose")
    rows = [header]
    low = []
    for name, sizes, model, x in _cases(device):
        print(f"{name}: {sizes}", flush=True)
        for s in SPARSITIES:
            r = _row(name, model, x, s, device)
            t = r["t"]
            sp = {c: t["dense"] / t[c] if c in t else None for c in cols}
            if sp["auto"] is not None and sp["auto"] < 1.0:
                low.append(f"{name} {s:.0%}: auto {sp['auto']:.2f}x")
            rows.append(
                (
                    name,
                    f"{s:.0%}",
                    f"{t['dense']:.3f}",
                    *("-" if sp[c] is None else f"{sp[c]:.2f}x" for c in cols),
                    "-" if r["raw"] is None else f"{r['raw']:.2f}x",
                    r["chose"],
                )
            )
    print(
        f"\ninference on {device}, global magnitude pruning; torch {torch.__version__}, torch.set_num_threads({THREADS}); "
        f"speed-up = dense ms / variant ms, median of {REPEATS} interleaved rounds; outputs checked first "
        f"(allclose atol 1e-5 vs the masked model); {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end"
    )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for i, r in enumerate(rows):
        print(" | ".join(c.ljust(w) if j in (0, len(r) - 1) else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths))))
        if i == 0:
            print("-+-".join("-" * w for w in widths))
    if low:
        print(
            "auto measured below 1.0x here (timing noise on a shared machine; auto keeps a backend only if it measured faster): "
            + "; ".join(low)
        )
    if device.type == "cuda":
        print(_semi_structured_case(device))
        print(_bsr_case(device))
    print(f"total {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
