"""Global selection at scale: the workbench's `Plan.global_` vs `torch.nn.utils.prune.global_unstructured`.

Both sides prune the same share of a Linear stack's weights by global magnitude (L1 of single weights), each
in its own subprocess so that peak memory is its own: ``ru_maxrss`` after the model is built vs at the end
("extra peak" = memory the selection needed on top of the model; for the workbench it includes the undo data
that lets `bench.undo()` restore the weights bitwise). Each side hashes its masks; the hashes must be equal
(same weights pruned), or differ only among weights whose magnitude equals the threshold (ties, which
`prune` breaks by `topk`'s internal order and the workbench by position), before a ratio is reported.

Run: ``.venv/bin/python -m benchmarks.selection`` (about 1.5 minutes on 2 cores: the 33.6M-parameter
stack 8 x [1024->2048->1024] and the digits-mlp demo, 3 interleaved runs per side with 5 s pauses); ``--large`` adds the 201M stack
12 x [2048->4096->2048] (+9 GB of RAM and about 3 minutes for `prune`'s three runs).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from torch import nn

THREADS = 2
RATIO = 0.5
RUNS = 3  # subprocess runs per side and case, interleaved
SETTLE_S = 5.0  # pause after each run: right after a process frees GBs, this VM runs ~10x slower for a few seconds
STACKS = {"33.6M": (8, 1024, 2048), "201M": (12, 2048, 4096)}


def _stack(blocks: int, d: int, h: int) -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(blocks):
        layers += [nn.Linear(d, h), nn.ReLU(), nn.Linear(h, d), nn.ReLU()]
    return nn.Sequential(*layers).eval()


def _model(case: str) -> nn.Module:
    if case in STACKS:
        return _stack(*STACKS[case])
    import workbench as wb

    return wb.demo.load(case)[0]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _digest(masks: list[torch.Tensor]) -> str:
    h = hashlib.sha256()
    for m in masks:
        h.update(m.reshape(-1).numpy().tobytes())
    return h.hexdigest()[:16]


def _child(side: str, case: str, out: str) -> None:
    from torch.nn.utils import prune

    import workbench as wb  # imported before measuring, on both sides

    torch.set_num_threads(THREADS)
    with torch.no_grad():
        model = _model(case)
    mods = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    model_mb = (
        sum(
            m.weight.numel() * m.weight.element_size() + (m.bias.numel() * 4 if m.bias is not None else 0) for m in mods
        )
        / 2**20
    )
    base = _rss_mb()
    t0 = time.perf_counter()
    phases: dict[str, float] = {}
    if side == "workbench":
        bench = wb.Workbench(model)  # no data: nothing traced
        for obj, attr, key in ((bench.store, "apply_", "store"), (bench, "report", "report")):
            phases[key] = 0.0
            setattr(obj, attr, _timed(getattr(obj, attr), phases, key))  # same calls, their time noted
        bench.apply(wb.Plan.global_(RATIO, include=[n for n, m in model.named_modules() if m in mods]), evaluate=False)
        seconds = time.perf_counter() - t0
        phases["select"] = seconds - phases["store"] - phases["report"]  # the rest of apply: the selection
        peak = _rss_mb()
        masks = [bench.store.current(f"{n}.weight") for n, m in model.named_modules() if m in mods]
    else:
        prune.global_unstructured([(m, "weight") for m in mods], pruning_method=prune.L1Unstructured, amount=RATIO)
        seconds = time.perf_counter() - t0
        peak = _rss_mb()
        masks = [m.weight_mask == 0 for m in mods]
    pruned = sum(int(m.sum()) for m in masks)
    total = sum(m.numel() for m in masks)
    weights = [m.weight.detach() for m in mods] if side == "workbench" else [m.weight_orig.detach() for m in mods]
    if side == "workbench":
        bench.undo()  # the workbench zeroed the weights in place: look at the originals
    threshold = max(float(w[m].abs().max()) for w, m in zip(weights, masks) if m.any())
    kept_min = min(float(w[~m].abs().min()) for w, m in zip(weights, masks) if (~m).any())
    assert kept_min >= threshold, f"{side}: a kept weight ({kept_min}) is smaller than a pruned one ({threshold})"
    np.save(out, np.packbits(torch.cat([m.reshape(-1) for m in masks]).numpy()))
    print(
        json.dumps(
            {
                "seconds": seconds,
                "extra_mb": peak - base,
                "model_mb": model_mb,
                "params": total,
                "pruned": pruned,
                "digest": _digest(masks),
                "threshold": threshold,
                "phases": phases,
            }
        )
    )


def _timed(fn, phases: dict[str, float], key: str):
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            phases[key] += time.perf_counter() - t0

    return wrapper


def _run(side: str, case: str, out_file: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.selection", "--child", side, case, out_file],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode:
        raise SystemExit(f"{side} on {case} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", nargs=3, metavar=("SIDE", "CASE", "OUT"))
    ap.add_argument("--large", action="store_true", help="add the 201M-parameter stack (needs ~24 GB)")
    args = ap.parse_args()
    if args.child:
        _child(*args.child)
        return 0
    cases = ["digits-mlp", "33.6M"] + (["201M"] if args.large else [])
    start = time.perf_counter()
    rows = [
        (
            "case",
            "params",
            "model MB",
            "prune s (min)",
            "workbench s (min)",
            "speed-up (min)",
            "prune +MB",
            "workbench +MB",
            "masks",
        )
    ]
    tmp = tempfile.mkdtemp()
    phases_of: dict[str, dict[str, float]] = {}
    for case in cases:
        runs: dict[str, list[dict]] = {"prune": [], "workbench": []}
        for _ in range(RUNS):  # interleaved; the median run of each side is reported
            for side in runs:
                runs[side].append(_run(side, case, os.path.join(tmp, f"{side}.npy")))
                time.sleep(SETTLE_S)
        p, w = (sorted(runs[side], key=lambda r: r["seconds"])[RUNS // 2] for side in ("prune", "workbench"))
        phases_of[case] = w["phases"]
        p_min, w_min = (min(r["seconds"] for r in runs[side]) for side in ("prune", "workbench"))
        assert p["pruned"] == w["pruned"], case
        if p["digest"] == w["digest"]:
            same = "equal"
        else:  # both prune everything below the same threshold; they may pick different ties at it
            assert p["threshold"] == w["threshold"], f"{case}: thresholds differ ({p['threshold']} vs {w['threshold']})"
            a, b = (np.unpackbits(np.load(os.path.join(tmp, f"{s}.npy"))) for s in ("prune", "workbench"))
            same = f"equal but {int((a != b).sum()) // 2:,} ties at |w|={p['threshold']:.3g}"
        name = (
            case
            if case not in STACKS
            else f"stack {case} {STACKS[case][0]}x[{STACKS[case][1]}->{STACKS[case][2]}->{STACKS[case][1]}]"
        )
        rows.append(
            (
                name,
                f"{w['params']:,}",
                f"{w['model_mb']:.0f}",
                f"{p['seconds']:.2f} ({p_min:.2f})",
                f"{w['seconds']:.2f} ({w_min:.2f})",
                f"{p['seconds'] / w['seconds']:.1f}x ({p_min / w_min:.1f}x)",
                f"{p['extra_mb']:.0f}",
                f"{w['extra_mb']:.0f}",
                same,
            )
        )
    print(
        f"global magnitude selection, {RATIO:.0%} of Linear weights; torch {torch.__version__}, "
        f"torch.set_num_threads({THREADS}); each side in its own subprocess, median of {RUNS} interleaved runs "
        f"with {SETTLE_S:g} s pauses (min in brackets; extra MB = peak RSS over the built model, the workbench's includes its undo data); {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, r in enumerate(rows):
        print(" | ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths))))
        if i == 0:
            print("-+-".join("-" * w for w in widths))
    for name, ph in phases_of.items():
        print(
            f"workbench phases, {name} (its median run): select {ph['select']:.2f} s (scores, sample, band), "
            f"store {ph['store']:.2f} s (undo values, zeroing, bit-packed masks), report {ph['report']:.2f} s (non-zeros)"
        )
    print(f"total {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
