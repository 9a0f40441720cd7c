"""Sensitivity scans: the workbench's exact scan against a Distiller-style loop, and what each optimisation buys.

A Distiller-style scan deep-copies the model for every (layer, ratio) point, prunes that one layer in the copy
and runs a full evaluation. The workbench's exact scan gives the same curves without copying or changing the
model: each row is ranked once for all ratios, masked variants share every other weight, points run on a thread
pool, and only the part of the network downstream of the pruned layer re-runs on cached torch.fx activations.
Estimate mode predicts the loss change of every point from one gradient pass (optionally with a diagonal-Fisher
second-order term); its time is compared with the exact scan's, and its values with the exact scan run with
``metric="loss"`` (same units) by Spearman rank correlation over all points.

Refine mode (``mode="refine", budget=0.2``: the estimate, then the 20% of cells that matter most measured exactly)
is compared with the exact loss scan by Spearman over all cells, next to the estimate's own trust figure; run to
the end it is checked to equal the exact loss scan (atol 1e-6). ``engine="batched"`` (a row's ratios in one
batched suffix pass) is timed against ``engine="suffix"`` (one point per pass) after the same curve check; the
default (``"auto"``, the "exact scan" rows) times both on the first row and takes the faster (which one it took is
printed under the table).

A second table times the estimate on a VGG-11-BN-like model written here (8 conv3x3+BN+ReLU, classifier
25088->4096->4096->1000, 132.9M parameters; 12 random 3x64x64 inputs, as the zoo run that took 111 s) against one
forward+backward pass over the same data, with and without the trust check.

Every ratio is reported only after its two sides were checked to give the same curves (``assert_allclose``,
atol 1e-6); estimates cannot be equal, so their rows report the rank correlation instead.

A Dask table runs the exact scan on a `dask.distributed.LocalCluster` of two worker processes (model state, data
and rows sent once; points as tasks) against the same scan run locally, after checking they give the same curves;
on one 2-core machine it shows the cost of shipping work to processes, not a speed-up (a cluster of machines or
GPUs is where it pays).

The zoo run (``--zoo``, on its own) first compares the estimate and refine-20% with the exact map on every model of
the test zoo (32 architectures, small configs, random weights), with the estimate's cost (``--small-zoo``: this
table alone); then the exact scan with the Distiller loop on
real-size models with random weights: ResNet-50 (Hugging Face config, 256 images at 3x64x64) and a BERT-base-sized
encoder (8 sequences of 128 tokens), on six rows spread over each model's depth. Both are Hugging Face models called with keyword
inputs, so the exact scan runs the replay engine (recorded outputs of the module calls before the pruned layer).

Run: ``.venv/bin/python -m benchmarks.sensitivity`` (about six minutes on 2 idle cores; ``--vgg`` for the second
table alone, ``--zoo`` for the zoo, about twenty minutes; ``--all`` for both). ``--all --markdown`` also writes the
output into docs/benchmarks.md and its figures into README.md's sensitivity paragraph (between the markers
``MARKDOWN_BEGIN`` and ``MARKDOWN_END``). ``WB_BENCH_THREADS=1`` pins one thread (a machine shared with others).
"""

from __future__ import annotations

import copy
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn

import workbench as wb
from benchmarks import print_table
from workbench.analysis.sensitivity import TRUST_CELLS, SensitivityResult, rows_for
from workbench.masks import n_to_prune

THREADS = int(os.environ.get("WB_BENCH_THREADS", "2"))  # 1 on a machine shared with others
RATIOS = np.linspace(0.1, 0.9, 9)
CRITERION = "l1"
DEEP_DEPTH, DEEP_WIDTH, DEEP_EPOCHS = 20, 32, 5
SPEEDUP_GOAL, ESTIMATE_GOAL, SPEARMAN_GOAL = 4.0, 50.0, 0.9
ENGINES: dict[str, str] = {}  # case -> the engine engine="auto" took for its exact scan (filled by _check)
SUMMARY: dict[str, list] = {}  # figure -> values, for the summary `--markdown` writes into README.md
REFINE_BUDGET, REFINE_GOAL, ESTIMATE_COST_GOAL = 0.2, 0.95, 3.0


@dataclass
class Case:
    name: str
    sizes: str
    model: nn.Module
    data: object  # the demo DemoData; scans and the baseline use data.calib
    granularity: str
    repeats: int  # interleaved timed rounds per side, after a warm-up; the first round's results are checked


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _deep_cnn(data) -> nn.Module:
    """A plain CNN, DEEP_DEPTH x (conv3x3 + BN + ReLU) at DEEP_WIDTH channels and a Linear head, trained
    DEEP_EPOCHS epochs on the digits training split (Adam, lr 1e-3, seed 0; about 5 s on 2 cores).
    One epoch leaves it at chance level (eval-mode BN statistics lag), which would make every accuracy curve 0."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        layers: list[nn.Module] = []
        c = 1
        for _ in range(DEEP_DEPTH):
            layers += [nn.Conv2d(c, DEEP_WIDTH, 3, padding=1, bias=False), nn.BatchNorm2d(DEEP_WIDTH), nn.ReLU()]
            c = DEEP_WIDTH
        model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(DEEP_WIDTH, 10))
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        model.train()
        for _ in range(DEEP_EPOCHS):
            for x, y in data.train:
                opt.zero_grad()
                nn.functional.cross_entropy(model(x), y).backward()
                opt.step()
    return model.eval()


def _sizes(model: nn.Module, data, granularity: str) -> str:
    bench = wb.Workbench(model, data)
    rows = rows_for(bench, granularity, CRITERION)
    n = sum(len(x) for x, _ in data.calib)
    return f"{_params(model):,} params, {len(rows)} rows x {len(RATIOS)} ratios, calib {n}x1x8x8"


def _cases() -> list[Case]:
    resnet, data = wb.demo.load("digits-resnet")
    t0 = time.perf_counter()
    deep = _deep_cnn(data)
    print(f"plain CNN: trained {DEEP_EPOCHS} epochs in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    name = f"plain CNN {DEEP_DEPTH}x{DEEP_WIDTH}"
    return [
        Case("digits-resnet", _sizes(resnet, data, "weight"), resnet, data, "weight", 5),
        Case("digits-resnet", _sizes(resnet, data, "filter"), resnet, data, "filter", 5),
        Case(name, _sizes(deep, data, "weight"), deep, data, "weight", 3),
    ]


def _distiller(model: nn.Module, data, granularity: str, bench: wb.Workbench) -> SensitivityResult:
    """Distiller-style scan: for every layer (or coupled row) and ratio, deepcopy the model, prune that layer
    alone in the copy, evaluate the copy in full, subtract the unpruned accuracy.

    `weight`: each conv/linear weight ranked by |w| from scratch (stable argsort, ties by position), the first
    `n_to_prune(ratio, n)` zeroed. `filter`: the coupled rows of `rows_for` and each row's
    `ranking.masks(ratio)`, zeroed in the copy (a coupled group's channels must go together; `rows_for` runs
    inside the timed loop, as it does inside the exact scan)."""
    base = wb.evaluate(model, data.calib, "accuracy")["metric"]
    if granularity != "weight":
        rows = rows_for(bench, granularity, CRITERION)
        names, members = [r.label for r in rows], tuple(r.members for r in rows)
        values = _row_loop(model, data.calib, rows, "accuracy", base)
        return SensitivityResult(
            tuple(names), members, RATIOS.copy(), values, base, "accuracy", True, granularity, CRITERION, "exact"
        )
    names = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    members = tuple((n,) for n in names)
    values = np.zeros((len(names), len(RATIOS)))
    for i, name in enumerate(names):
        for j, ratio in enumerate(RATIOS):
            pruned = copy.deepcopy(model)
            with torch.no_grad():
                w = pruned.get_submodule(name).weight
                order = torch.argsort(w.abs().flatten(), stable=True)
                w.view(-1)[order[: n_to_prune(float(ratio), w.numel())]] = 0
            values[i, j] = wb.evaluate(pruned, data.calib, "accuracy")["metric"] - base
    return SensitivityResult(
        tuple(names), members, RATIOS.copy(), values, base, "accuracy", True, granularity, CRITERION, "exact"
    )


def _row_loop(model: nn.Module, data, rows, metric: str, base: float) -> np.ndarray:
    """The Distiller loop over scan rows: per row and ratio, deepcopy the model, zero the row's
    `ranking.masks(ratio)` in the copy, evaluate the copy in full, subtract `base`."""
    values = np.zeros((len(rows), len(RATIOS)))
    for i, row in enumerate(rows):
        for j, ratio in enumerate(RATIOS):
            pruned = copy.deepcopy(model)
            with torch.no_grad():
                for pname, mask in row.ranking.masks(float(ratio)).items():
                    pruned.get_parameter(pname).masked_fill_(mask, 0)
            values[i, j] = wb.evaluate(pruned, data, metric)["metric"] - base
    return values


def _sides(case: Case) -> tuple[wb.Workbench, dict[str, Callable[[], SensitivityResult]]]:
    bench = wb.Workbench(case.model, case.data)
    g = case.granularity

    def scan(**kw) -> SensitivityResult:
        return bench.sensitivity(RATIOS, granularity=g, criterion=CRITERION, progress=False, **kw)

    def one_worker() -> SensitivityResult:
        with ThreadPoolExecutor(max_workers=1) as pool:
            return scan(executor=pool)

    return bench, {
        "distiller": lambda: _distiller(case.model, case.data, g, bench),
        "ours": scan,
        "one-worker": one_worker,
        "full": lambda: scan(engine="full"),
        "suffix": lambda: scan(engine="suffix"),
        "batched": lambda: scan(engine="batched"),
        "estimate": lambda: scan(mode="estimate"),
        "estimate-2nd": lambda: scan(mode="estimate", second_order=True),
        "refine": lambda: scan(mode="refine", budget=REFINE_BUDGET),
    }


def _warm_up(case: Case, bench: wb.Workbench) -> None:
    """Cheap first calls of every code path (fx tracing, thread pool, autograd), so no timed run pays them."""
    wb.evaluate(copy.deepcopy(case.model), case.data.calib, "accuracy")
    first = rows_for(bench, case.granularity, CRITERION)[0].label
    for kw in (
        {},
        {"engine": "full"},
        {"engine": "suffix"},
        {"engine": "batched"},
        {"mode": "estimate"},
        {"mode": "estimate", "second_order": True},
        {"mode": "refine", "budget": 0.5},
    ):
        bench.sensitivity(
            RATIOS[:1], granularity=case.granularity, criterion=CRITERION, layers=[first], progress=False, **kw
        )


def _check(case: Case, res: dict[str, SensitivityResult]) -> dict[str, float]:
    """Same curves before any ratio: Distiller == ours == one worker == full engine. Estimates cannot be equal:
    their Spearman rank correlation over all points with the exact scan run with metric="loss" (same units)."""
    ours, dist = res["ours"], res["distiller"]
    where = f"{case.name} {case.granularity}"
    assert ours.metric_name == "accuracy" and ours.complete, f"{where}: unexpected scan {ours.metric_name}"
    assert ours.layers == dist.layers, f"{where}: rows differ: {ours.layers} vs {dist.layers}"
    assert ours.members == dist.members, f"{where}: row members differ"
    assert abs(ours.baseline - dist.baseline) < 1e-9, f"{where}: baselines differ"
    np.testing.assert_allclose(ours.values, dist.values, atol=1e-6, err_msg=f"{where}: ours vs Distiller")
    for k in ("one-worker", "full", "suffix", "batched"):
        np.testing.assert_allclose(res[k].values, ours.values, atol=1e-6, err_msg=f"{where}: {k} vs default")
    assert res["full"].engine.startswith("full") and ours.engine.startswith("suffix"), (
        f"{where}: engines {ours.engine!r} / {res['full'].engine!r}"
    )
    exact = res["exact-loss"].values.ravel()
    assert res["exact-loss"].metric_name == "loss" and np.isfinite(exact).all(), f"{where}: exact loss scan"
    full = res["refine-all"]
    assert full.exact.all() and full.complete, f"{where}: refine did not finish"
    np.testing.assert_allclose(full.values.ravel(), exact, atol=1e-6, err_msg=f"{where}: refine to the end vs exact")
    part = res["refine"]
    assert part.exact.sum() == max(len(part.checks), int(np.ceil(REFINE_BUDGET * part.values.size - 1e-9)))
    out = {k: float(spearmanr(res[k].values.ravel(), exact).statistic) for k in ("estimate", "estimate-2nd", "refine")}
    out["trust"], out["trust-2nd"] = res["estimate"].trust, res["estimate-2nd"].trust
    ENGINES[f"{case.name} {case.granularity}"] = ours.engine
    return out


def _suffix_share(bench: wb.Workbench, rows, data, repeats: int = 3) -> float:
    """Mean over `rows` of the share of one forward pass over `data` that runs from the row's first module call to
    the end (wall clock, median of `repeats` passes; forward pre-hooks on the rows' first members, removed after).
    An exact scan must run at least that part per point, so ``1 / share`` bounds what skipping the part before the
    pruned layer can buy against a loop of full forwards, for models whose later layers all depend on the pruned one
    (chains, residual stacks, transformer blocks)."""
    first = {row.members[0] for row in rows}
    mods = {name: bench.model.get_submodule(name) for name in first}
    shares: list[list[float]] = [[] for _ in rows]
    seen: dict[str, float] = {}  # module name -> time of its first call in the current batch

    def hook(name: str):
        def pre(_module, _args) -> None:  # returns None: the inputs go on unchanged
            seen.setdefault(name, time.perf_counter())

        return pre

    for _ in range(repeats):
        hooks = [m.register_forward_pre_hook(hook(name)) for name, m in mods.items()]
        try:
            prefix = dict.fromkeys(first, 0.0)
            total = 0.0
            with torch.no_grad():
                for x, _ in bench.adapter.batches(data, bench.model):
                    seen.clear()
                    t0 = time.perf_counter()
                    bench.adapter.call(x, bench.model)
                    t1 = time.perf_counter()
                    total += t1 - t0
                    for name in first:
                        prefix[name] += seen.get(name, t1) - t0
        finally:
            for h in hooks:
                h.remove()
        for i, row in enumerate(rows):
            shares[i].append(1.0 - prefix[row.members[0]] / total)
    return float(np.mean([statistics.median(v) for v in shares]))


def _run(case: Case) -> tuple[dict[str, float], dict[str, float]]:
    """Warm up, then `repeats` interleaved timed rounds (the order rotates each round); the first round's
    results are checked before the others run. Returns the median seconds per side and the Spearman values."""
    bench, sides = _sides(case)
    _warm_up(case, bench)
    samples: dict[str, list[float]] = {k: [] for k in sides}
    names = list(sides)
    rho: dict[str, float] = {}
    for r in range(case.repeats):
        results = {}
        for k in names[r % len(names) :] + names[: r % len(names)]:
            t0 = time.perf_counter()
            results[k] = sides[k]()
            samples[k].append(time.perf_counter() - t0)
        if r == 0:
            results["exact-loss"] = bench.sensitivity(
                RATIOS, granularity=case.granularity, criterion=CRITERION, metric="loss", progress=False
            )
            results["refine-all"] = bench.sensitivity(
                RATIOS, granularity=case.granularity, criterion=CRITERION, mode="refine", progress=False
            )
            rho = _check(case, results)
    rho["suffix"] = _suffix_share(bench, rows_for(bench, case.granularity, CRITERION), case.data.calib)
    return {k: statistics.median(v) for k, v in samples.items()}, rho


def _vgg11_bn() -> nn.Module:
    """VGG-11 with BatchNorm as torchvision builds it (written here: no torchvision), 1000 classes."""
    layers: list[nn.Module] = []
    c = 3
    for v in (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"):
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c, int(v), 3, padding=1), nn.BatchNorm2d(int(v)), nn.ReLU(inplace=True)]
            c = int(v)
    head = [nn.Linear(c * 49, 4096), nn.ReLU(True), nn.Dropout(), nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout()]
    return nn.Sequential(nn.Sequential(*layers), nn.AdaptiveAvgPool2d(7), nn.Flatten(), *head, nn.Linear(4096, 1000))


def _vgg_table(repeats: int = 3) -> None:
    """Estimate cost on the VGG-11-BN-like model vs one forward+backward over its 12 calibration samples."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = _vgg11_bn().eval()
        x, y = torch.randn(12, 3, 64, 64), torch.randint(0, 1000, (12,))
    data = [(x, y)]
    bench = wb.Workbench(model, data, metric="loss")

    def fwd_bwd() -> None:
        loss = nn.functional.cross_entropy(model(x), y)
        torch.autograd.grad(loss, [p for p in model.parameters() if p.requires_grad])

    sides = {
        "fwd+bwd": fwd_bwd,
        "estimate": lambda: bench.sensitivity(mode="estimate", trust_cells=0, progress=False),
        "estimate+trust": lambda: bench.sensitivity(mode="estimate", progress=False),
    }
    fwd_bwd()
    samples: dict[str, list[float]] = {k: [] for k in sides}
    names = list(sides)
    for r in range(repeats):
        for k in names[r % len(names) :] + names[: r % len(names)]:
            t0 = time.perf_counter()
            out = sides[k]()
            samples[k].append(time.perf_counter() - t0)
            if k == "estimate+trust":
                trust = out.trust
    med = {k: statistics.median(v) for k, v in samples.items()}
    SUMMARY.setdefault("estimate cost", []).append(med["estimate"] / med["fwd+bwd"])
    SUMMARY.setdefault("estimate cost with trust real", []).append(med["estimate+trust"] / med["fwd+bwd"])
    n = _params(model)
    print(
        f"estimate cost, VGG-11-BN-like ({n / 1e6:.1f}M params, classifier 25088->4096->4096->1000), 12 x 3x64x64 "
        f"random inputs, weight/magnitude, 9 ratios; median of {repeats} interleaved runs"
    )
    print(f"one forward+backward:        {med['fwd+bwd']:.2f} s")
    for k, label in (("estimate", "estimate (no trust check)"), ("estimate+trust", "estimate + trust (8 cells)")):
        ratio = med[k] / med["fwd+bwd"]
        verdict = "met" if ratio <= ESTIMATE_COST_GOAL else "NOT met"
        print(f"{label + ':':28} {med[k]:.2f} s = {ratio:.1f}x (goal <= {ESTIMATE_COST_GOAL:g}x: {verdict})")
    print(f"trust of this estimate (random weights and labels): {trust:.2f}")


def _demo_maps_table() -> list[tuple[str, float]]:
    """Estimate and refine-20% against the exact loss map on the demos the main table does not time (one run
    each: only the maps are compared). Returns (case, refine-20% Spearman) pairs."""
    print(
        f"estimate and refine {REFINE_BUDGET:.0%} vs the exact loss map on the other demos: Spearman over all cells, "
        f"{len(RATIOS)} ratios, criterion {CRITERION}, digits calib data"
    )
    head = ("demo", "cells", "estimate 1st", "estimate 2nd", "trust", f"refine {REFINE_BUDGET:.0%}", "cells measured")
    table, got = [head], []
    for name, g in (("digits-mlp", "weight"), ("digits-cnn", "weight"), ("digits-cnn", "filter"),
                    ("digits-lstm", "weight"), ("digits-transformer", "weight")):  # fmt: skip
        model, data = wb.demo.load(name)
        bench = wb.Workbench(model, data)

        def scan(g=g, bench=bench, **kw) -> SensitivityResult:
            return bench.sensitivity(RATIOS, granularity=g, criterion=CRITERION, progress=False, **kw)

        exact = scan(metric="loss").values.ravel()
        est, est2 = scan(mode="estimate"), scan(mode="estimate", second_order=True)
        part = scan(mode="refine", budget=REFINE_BUDGET)
        rho = [float(spearmanr(r.values.ravel(), exact).statistic) for r in (est, est2, part)]
        got.append((f"{name} {g}", rho[2]))
        SUMMARY.setdefault("refine demos", []).append(rho[2])
        n = part.values.size
        table.append((f"{name} {g}", str(n), f"{rho[0]:.3f}", f"{rho[1]:.3f}", f"{est.trust:.2f}", f"{rho[2]:.3f}",
                      f"{int(part.exact.sum())} ({part.exact.sum() / n:.0%})"))  # fmt: skip
    print_table(table)
    return got


def _dask_table() -> None:
    """The exact scan on a Dask cluster of 2 worker processes against the same scan run locally (same curves
    checked first); timed once each after the cluster has started and seen one scan."""
    from dask.distributed import Client, LocalCluster

    print(
        "exact scan on a dask.distributed LocalCluster (2 worker processes, 1 thread each) vs the local scan "
        f"(thread pool, {THREADS} workers), {len(RATIOS)} ratios, criterion {CRITERION}, metric accuracy"
    )
    head = ("case", "local s", "dask s", "local/dask", "check")
    table = [head]
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=50) as c:
        with Client(c) as client:
            for name, g in (("digits-resnet", "weight"), ("digits-resnet", "filter"), ("digits-cnn", "filter")):
                model, data = wb.demo.load(name)
                bench = wb.Workbench(model, data)

                def scan(g=g, bench=bench, **kw) -> SensitivityResult:
                    return bench.sensitivity(RATIOS, granularity=g, criterion=CRITERION, progress=False, **kw)

                scan(executor=client)  # warm-up: the workers import torch and receive the model once
                t0 = time.perf_counter()
                local = scan()
                t_local = time.perf_counter() - t0
                t0 = time.perf_counter()
                remote = scan(executor=client)
                t_dask = time.perf_counter() - t0
                np.testing.assert_allclose(remote.values, local.values, atol=1e-6, err_msg=f"{name} {g}: dask vs local")
                assert "dask" in remote.engine, remote.engine
                table.append((f"{name} {g}/{CRITERION}", f"{t_local:.2f}", f"{t_dask:.2f}",
                              f"{t_local / t_dask:.2f}x", "same curves"))  # fmt: skip
    print_table(table)


ZOO_ROWS = 6  # rows of each real-size model scanned (evenly spread over its depth), 9 ratios each


def _resnet50():
    """ResNet-50 (Hugging Face `ResNetConfig` defaults, 1000 classes: bottleneck stages 3-4-6-3, 25.6M parameters, random
    weights), 256 random 3x64x64 images in 4 batches of 64."""
    import transformers as T

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = T.ResNetForImageClassification(T.ResNetConfig(num_labels=1000)).eval()
        g = torch.Generator().manual_seed(0)
        data = [(torch.randn(64, 3, 64, 64, generator=g), torch.randint(0, 1000, (64,), generator=g)) for _ in range(4)]
    return model, [{"pixel_values": x, "labels": y} for x, y in data]


def _bert_base():
    """A BERT-base-sized encoder (12 layers, hidden 768, 109.5M parameters, random weights), 8 random sequences of
    128 tokens in 2 batches."""
    import transformers as T

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        cfg = T.BertConfig(
            vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, num_labels=3
        )
        model = T.BertForSequenceClassification(cfg).eval()
        g = torch.Generator().manual_seed(0)
        data = []
        for _ in range(2):
            ids = torch.randint(0, 30522, (4, 128), generator=g)
            data.append(
                {
                    "input_ids": ids,
                    "attention_mask": torch.ones_like(ids),
                    "labels": torch.randint(0, 3, (4,), generator=g),
                }
            )
    return model, data


def _fwd_bwd(model: nn.Module, data) -> float:
    """Seconds of one forward+backward pass over `data` (keyword batches with labels: the model's own loss)."""
    params = [p for p in model.parameters() if p.requires_grad]
    t0 = time.perf_counter()
    for batch in data:
        torch.autograd.grad(model(**batch).loss, params)
    return time.perf_counter() - t0


def _zoo_table() -> None:
    """Exact scan vs the Distiller loop on real-size models, on ZOO_ROWS rows spread over the depth (the loop
    would take hours over every row on 2 cores; per point both sides do the same work on any row); then, on the
    same rows, the estimate and refine-20% against that exact map, and the estimate's cost (every row, trust check
    included) against one forward+backward."""
    print(
        f"exact scan vs Distiller loop on real-size models: {ZOO_ROWS} weight rows spread over the depth x "
        f"{len(RATIOS)} ratios, criterion {CRITERION}, metric loss; one run each after a warm-up"
    )
    head = ("model", "sizes", "engine", "loop s", "exact s", "ratio", "bound", "check")
    table, maps = [head], [("model", "estimate 1st", "trust", f"refine {REFINE_BUDGET:.0%}", "cells measured",
                            "fwd+bwd s", "estimate s", "cost")]  # fmt: skip
    for name, build in (("ResNet-50 (HF config)", _resnet50), ("BERT-base-sized", _bert_base)):
        model, data = build()
        bench = wb.Workbench(model, data, metric="loss")
        every = rows_for(bench, "weight", CRITERION)
        pick = [every[round(k * (len(every) - 1) / (ZOO_ROWS - 1))].label for k in range(ZOO_ROWS)]
        rows = rows_for(bench, "weight", CRITERION, layers=pick)
        bench.sensitivity(RATIOS[:1], criterion=CRITERION, layers=pick[:1], progress=False)  # warm-up
        t0 = time.perf_counter()
        ours = bench.sensitivity(RATIOS, criterion=CRITERION, layers=pick, progress=False)
        t_ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        loop = _row_loop(model, data, rows, "loss", wb.evaluate(model, data, "loss")["metric"])
        t_loop = time.perf_counter() - t0
        np.testing.assert_allclose(ours.values, loop, atol=1e-6, err_msg=f"{name}: exact scan vs loop")
        n = sum(len(next(iter(b.values()))) for b in data)
        sizes = f"{_params(model) / 1e6:.1f}M params, {n} samples, {len(every)} rows in all"
        engine = ours.engine.split(" (")[0]
        bound = 1 / _suffix_share(bench, rows, data)
        table.append((name, sizes, engine, f"{t_loop:.1f}", f"{t_ours:.1f}", f"{t_loop / t_ours:.1f}x",
                      f"{bound:.1f}x", "same curves"))  # fmt: skip
        SUMMARY.setdefault("exact real", []).append((name.split(" (")[0], t_loop / t_ours))
        # the estimate and refine-20% on the same rows, against the exact map just checked
        exact = ours.values.ravel()
        est = bench.sensitivity(RATIOS, mode="estimate", criterion=CRITERION, layers=pick, progress=False)
        part = bench.sensitivity(
            RATIOS, mode="refine", budget=REFINE_BUDGET, criterion=CRITERION, layers=pick, progress=False
        )
        rho = [float(spearmanr(r.values.ravel(), exact).statistic) for r in (est, part)]
        _fwd_bwd(model, data)  # warm-up
        t_fb = _fwd_bwd(model, data)
        t0 = time.perf_counter()
        bench.sensitivity(RATIOS, mode="estimate", criterion=CRITERION, progress=False)  # every row, trust included
        t_est = time.perf_counter() - t0
        cells = part.values.size
        SUMMARY.setdefault("refine real", []).append((name.split(" (")[0], rho[1]))
        SUMMARY.setdefault("estimate cost with trust real", []).append(t_est / t_fb)
        maps.append((name, f"{rho[0]:.3f}", f"{est.trust:.2f}", f"{rho[1]:.3f}",
                     f"{int(part.exact.sum())} of {cells} ({part.exact.sum() / cells:.0%})",
                     f"{t_fb:.1f}", f"{t_est:.1f}", f"{t_est / t_fb:.1f}x"))  # fmt: skip
        print(f"{name}: {t_loop + t_ours:.0f} s", file=sys.stderr)
    print_table(table)
    print()
    print(
        f"estimate and refine {REFINE_BUDGET:.0%} vs the exact loss map above (the same {ZOO_ROWS} rows): Spearman "
        f"over all cells; estimate cost: the estimate of every row with its {TRUST_CELLS}-cell trust check, against "
        f"one forward+backward over the same data (goal <= {ESTIMATE_COST_GOAL:g}x)"
    )
    print_table(maps)


def _small_zoo_table() -> None:
    """On every model of the test zoo (26 Hugging Face architectures from small configs and 6 hand-written CNNs,
    random weights, their own batches; imported from tests/zoo), every weight row x 9 ratios: the estimate and
    refine-20% against the exact loss map (Spearman over all cells), and how refine filled the cells it did not
    measure; and what the estimate costs, without and with its trust check, against one forward+backward (median
    of 3 runs each; these models take milliseconds, so fixed costs show)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from zoo.cnn import CNNS, _images, calibrated
    from zoo.hf import builders

    cases = [(name, make, batches) for name, (make, batches) in builders().items()]
    cases += [(name, lambda cls=cls: calibrated(cls()), _images) for name, cls in CNNS.items()]
    table = [("model", "cells", "estimate 1st", "trust", f"refine {REFINE_BUDGET:.0%}", "fill", "vs estimate",
              "fwd+bwd ms", "estimate", "+ trust")]  # fmt: skip
    got, constant, costs = [], [], []
    for name, make, batches in cases:
        torch.manual_seed(0)
        model, data = make().eval(), batches()
        bench = wb.Workbench(model, data, metric="loss")
        kw = {"criterion": CRITERION, "progress": False}
        exact = bench.sensitivity(RATIOS, **kw).values.ravel()
        if np.ptp(exact) == 0:  # every change the same (a model whose output does not depend on its weights yet)
            constant.append(name)
            table.append((name, str(exact.size), "-", "-", "-", "-", f"exact map constant ({exact[0]:g})", "-", "-",
                          "-"))  # fmt: skip
            continue
        est = bench.sensitivity(RATIOS, mode="estimate", **kw)
        part = bench.sensitivity(RATIOS, mode="refine", budget=REFINE_BUDGET, **kw)
        rho = [float(spearmanr(r.values.ravel(), exact).statistic) for r in (est, part)]
        got.append((name, rho[1], rho[0]))
        SUMMARY.setdefault("refine zoo", []).append(rho[1])
        t_fb, t_est, t_trust = _small_costs(bench, data)
        costs.append((t_est / t_fb, t_trust / t_fb, t_trust - t_est))
        SUMMARY.setdefault("estimate cost", []).append(t_est / t_fb)
        table.append((name, str(exact.size), f"{rho[0]:.3f}", f"{est.trust:.2f}", f"{rho[1]:.3f}", part.fill,
                      f"{rho[1] - rho[0]:+.3f}", f"{t_fb * 1e3:.1f}", f"{t_est / t_fb:.1f}x",
                      f"{t_trust / t_fb:.1f}x"))  # fmt: skip
    print(
        f"estimate and refine {REFINE_BUDGET:.0%} on the test zoo's {len(cases)} models (random weights, every weight "
        f"row x {len(RATIOS)} ratios, criterion {CRITERION}): Spearman over all cells with the exact loss map; fill: "
        "how refine predicted the cells it did not measure"
    )
    print_table(table)
    met = [n for n, r, _ in got if r >= REFINE_GOAL]
    below = [f"{n} {r:.3f}" for n, r, _ in got if r < REFINE_GOAL]
    worse = [f"{n} {r:.3f} < {e:.3f}" for n, r, e in got if r < e - 0.01]
    print(
        f"goal refine {REFINE_BUDGET:.0%} >= {REFINE_GOAL}: met on {len(met)} of {len(got)} models with a non-constant "
        f"map ({len(constant)} constant: {', '.join(constant) or 'none'}); below: {'; '.join(below) or 'none'}; "
        f"more than 0.01 below the estimate it started from: {'; '.join(worse) or 'none'}"
    )
    e, t, d = (np.array(c) for c in zip(*costs))
    print(
        f"estimate cost on these models: {e.min():.1f}-{e.max():.1f}x one forward+backward (goal <= "
        f"{ESTIMATE_COST_GOAL:g}x: met on {int((e <= ESTIMATE_COST_GOAL).sum())} of {len(e)}); with its "
        f"{TRUST_CELLS}-cell trust check {t.min():.1f}-{t.max():.1f}x (met on {int((t <= ESTIMATE_COST_GOAL).sum())}): "
        f"the check adds {d.min() * 1e3:.0f}-{d.max() * 1e3:.0f} ms, the fixed cost of building an exact engine "
        "and measuring 8 cells"
    )
    print()


def _small_costs(bench: wb.Workbench, data) -> tuple[float, float, float]:
    """Median seconds of one forward+backward over `data` (the adapter's loss), of the estimate without its trust
    check, and of the estimate with it."""
    model, adapter = bench.model, bench.adapter
    params = [p for p in model.parameters() if p.requires_grad]

    def fwd_bwd() -> None:
        for x, y in adapter.batches(data, model):
            loss, _ = adapter.loss(adapter.call(x, model), x, y)
            torch.autograd.grad(loss, params, allow_unused=True)

    kw = {"criterion": CRITERION, "progress": False, "mode": "estimate"}
    sides = (fwd_bwd, lambda: bench.sensitivity(RATIOS, trust_cells=0, **kw), lambda: bench.sensitivity(RATIOS, **kw))
    out = []
    for f in sides:
        f()  # warm-up
        ts = []
        for _ in range(3):
            t0 = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t0)
        out.append(statistics.median(ts))
    return out[0], out[1], out[2]


def _busy_seconds() -> float:
    """CPU seconds all processes on the machine have used since boot (/proc/stat; 0 where it is missing)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:9]]
    except OSError:
        return 0.0
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait


def _own_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


MARKDOWN_BEGIN = "<!-- written by `python -m benchmarks.sensitivity --all --markdown`: begin -->"
MARKDOWN_END = "<!-- written by `python -m benchmarks.sensitivity --all --markdown`: end -->"


class _Tee:
    """stdout that also keeps what was written (for `--markdown`)."""

    def __init__(self, stream):
        self.stream, self.parts = stream, []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()


def _rng(xs, fmt: str = "{:.1f}") -> str:
    lo, hi = min(xs), max(xs)
    return fmt.format(lo) if fmt.format(lo) == fmt.format(hi) else f"{fmt.format(lo)}-{fmt.format(hi)}"


def _summary(day: str) -> str:
    """README's sensitivity figures, from this run's `SUMMARY`."""
    d = SUMMARY
    real = "; ".join(f"{n} {r:.1f}x" for n, r in d["exact real"])
    demos, zoo = d["refine demos"], d["refine zoo"]
    real_refine = "; ".join(f"{n} {r:.3f}" for n, r in d["refine real"])
    return (
        f"measured by `benchmarks/sensitivity.py --all` ({day}, {os.cpu_count()} CPUs, {THREADS} threads): exact scans "
        f"give a Distiller-style loop's curves (1e-6) at {_rng(d['exact demos'])}x its speed on the demo CNNs "
        f"(goal {SPEEDUP_GOAL:g}x; real-size Hugging Face models: {real}); the estimate costs "
        f"{_rng(d['estimate cost'])}x one forward+backward on the test zoo and VGG-11-BN, "
        f"{_rng(d['estimate cost with trust real'])}x with its trust check on the real-size models (goal "
        f"{ESTIMATE_COST_GOAL:g}x); refine after {REFINE_BUDGET:.0%} of the cells ranks the maps at Spearman "
        f"{_rng(demos, '{:.3f}')} with the exact map on the demos ({sum(r >= REFINE_GOAL for r in demos)} of "
        f"{len(demos)} at {REFINE_GOAL:g} or more), {REFINE_GOAL:g} or more on {sum(r >= REFINE_GOAL for r in zoo)} of "
        f"{len(zoo)} test-zoo models ({real_refine})"
    )


def _write_markdown(output: str) -> None:
    """The run's output into docs/benchmarks.md and its figures into README.md, each between `MARKDOWN_BEGIN` and
    `MARKDOWN_END`."""
    root = Path(__file__).resolve().parents[1]
    day = time.strftime("%Y-%m-%d")
    doc = (
        f"\n`.venv/bin/python -m benchmarks.sensitivity --all --markdown`, {day}, {os.cpu_count()} CPUs, torch "
        f"{torch.__version__}, {THREADS} threads (this block is written by that command):\n\n```text\n"
        f"{output.rstrip()}\n```\n"
    )
    for path, body in ((root / "docs" / "benchmarks.md", doc), (root / "README.md", _summary(day))):
        text = path.read_text()
        i, j = text.find(MARKDOWN_BEGIN), text.find(MARKDOWN_END)
        if i < 0 or j < i:
            raise SystemExit(f"{path}: no place between {MARKDOWN_BEGIN!r} and {MARKDOWN_END!r} to write into")
        path.write_text(text[: i + len(MARKDOWN_BEGIN)] + body + text[j:])
        print(f"wrote {path.relative_to(root)}", file=sys.stderr)


def main() -> int:
    torch.set_num_threads(THREADS)
    if "--vgg" in sys.argv:  # only the estimate-cost table
        _vgg_table()
        return 0
    if "--small-zoo" in sys.argv:  # only the test zoo's small models (a few minutes)
        _small_zoo_table()
        return 0
    if "--zoo" in sys.argv:  # only the zoo: its small models, then the real-size ones (about 20 minutes on 2 cores)
        _small_zoo_table()
        _zoo_table()
        return 0
    tee = None
    if "--markdown" in sys.argv:  # every table, then the docs and README written from them
        if "--all" not in sys.argv:
            print("--markdown writes the figures of every table: run it with --all", file=sys.stderr)
            return 2
        tee = sys.stdout = _Tee(sys.stdout)
    _main_tables()
    if "--all" in sys.argv:
        print()
        _small_zoo_table()
        _zoo_table()
    if tee is not None:
        sys.stdout = tee.stream
        _write_markdown("".join(tee.parts))
    return 0


def _main_tables() -> None:
    start = time.perf_counter()
    busy0, own0 = _busy_seconds(), _own_seconds()
    load = os.getloadavg()[0]
    if load > 0.5:
        print(
            f"warning: the machine is busy (load average {load:.1f} before starting); with {THREADS} threads on "
            f"{os.cpu_count()} CPUs other processes distort these timings: rerun when it is idle"
        )
    runs = []
    for case in _cases():
        t0 = time.perf_counter()
        secs, rho = _run(case)
        print(f"{case.name} {case.granularity}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        runs.append((case, secs, rho))
    wall = time.perf_counter() - start
    others = max(0.0, (_busy_seconds() - busy0) - (_own_seconds() - own0)) / (wall * (os.cpu_count() or 1))
    header = ("case", "sizes", "baseline", "ours", "baseline s", "ours s", "ratio", "check")
    table = [header]
    for case, s, rho in runs:
        name = f"{case.name} {case.granularity}/{CRITERION}"
        same = "same curves"
        pairs = (
            (name, case.sizes, "Distiller loop", "exact scan", "distiller", "ours", same),
            ("", "", "exact, 1 worker", "exact, 2 workers", "one-worker", "ours", same),
            ("", "", "exact, engine=full", "exact, fx suffix", "full", "suffix", same),
            ("", "", "exact, 1 point/pass", "exact, batched", "suffix", "batched", same),
            (
                "",
                "",
                "exact scan",
                "estimate, 1st order",
                "ours",
                "estimate",
                f"Spearman {rho['estimate']:.3f}, trust {rho['trust']:.2f}",
            ),
            (
                "",
                "",
                "exact scan",
                "estimate, 2nd order",
                "ours",
                "estimate-2nd",
                f"Spearman {rho['estimate-2nd']:.3f}, trust {rho['trust-2nd']:.2f}",
            ),
            (
                "",
                "",
                "exact scan",
                f"refine {REFINE_BUDGET:.0%} of cells",
                "ours",
                "refine",
                f"Spearman {rho['refine']:.3f}",
            ),
        )
        for c, sz, bl, ou, kb, ko, chk in pairs:
            table.append((c, sz, bl, ou, f"{s[kb]:.3f}", f"{s[ko]:.3f}", f"{s[kb] / s[ko]:.1f}x", chk))
    print(
        f"sensitivity scans, {len(RATIOS)} ratios 0.1..0.9, criterion {CRITERION}, digits calib data; torch "
        f"{torch.__version__}, torch.set_num_threads({THREADS}); median of 5 (digits-resnet) / 3 (plain CNN) "
        f"interleaved runs after a warm-up; {os.cpu_count()} CPUs, other processes used {others:.0%} of them "
        f"during the run"
    )
    print(
        "curves checked first: Distiller loop == exact scan == 1 worker == engine=full == suffix == batched "
        "(assert_allclose atol 1e-6), refine run to the end == exact loss scan; estimates and refine-20%: Spearman "
        "rank correlation over all points with the exact scan run with metric='loss'; trust: the estimate's own "
        "figure from 8 checked cells"
    )
    print_table(table, right={4, 5, 6})
    print("exact scan (engine='auto'): " + "; ".join(f"{k}: {v}" for k, v in ENGINES.items()))

    def verdict(got: list[tuple[str, float]], goal: float, fmt: str) -> str:
        met = sum(v >= goal for _, v in got)
        word = "met" if met == len(got) else "NOT met" if met == 0 else f"met in {met} of {len(got)} cases"
        return f"{word} (" + "; ".join(f"{n} {fmt.format(v)} {'met' if v >= goal else 'not met'}" for n, v in got) + ")"

    print()
    for label, key, base, goal in (
        ("Distiller/exact", "ours", "distiller", SPEEDUP_GOAL),
        ("exact/estimate 1st order", "estimate", "ours", ESTIMATE_GOAL),
        ("exact/estimate 2nd order", "estimate-2nd", "ours", ESTIMATE_GOAL),
    ):
        got = [(f"{c.name} {c.granularity}", s[base] / s[key]) for c, s, _ in runs]
        print(f"goal {label} >= {goal:g}x: {verdict(got, goal, '{:.1f}x')}")
        if key == "ours":  # what skipping the layers before the pruned one can buy at most
            print(
                "  bound: a point evaluated on its own runs at least the forward pass from the pruned layer on; that "
                "part is "
                + "; ".join(
                    f"{c.name} {c.granularity} {r['suffix']:.0%} of a forward on average (at most "
                    f"{1 / r['suffix']:.1f}x the loop), measured {s['distiller'] / s['suffix']:.1f}x one point per "
                    f"pass, {s['distiller'] / s['ours']:.1f}x auto"
                    for c, s, r in runs
                )
            )
    for label, key in (("1st order", "estimate"), ("2nd order", "estimate-2nd")):
        got = [(f"{c.name} {c.granularity}", rho[key]) for c, _, rho in runs]
        print(
            f"goal Spearman(estimate {label}, exact loss) >= {SPEARMAN_GOAL:g}: {verdict(got, SPEARMAN_GOAL, '{:.3f}')}"
        )
    print()
    SUMMARY["exact demos"] = [s["distiller"] / s["ours"] for _, s, _ in runs]
    SUMMARY["refine demos"] = [rho["refine"] for _, _, rho in runs]
    got = [(f"{c.name} {c.granularity}", rho["refine"]) for c, _, rho in runs] + _demo_maps_table()
    print(
        f"goal Spearman(refine {REFINE_BUDGET:.0%}, exact loss) >= {REFINE_GOAL:g}: {verdict(got, REFINE_GOAL, '{:.3f}')}"
    )
    print()
    _dask_table()
    print()
    _vgg_table()
    if others > 0.1:
        print(
            f"warning: other processes used {others:.0%} of the {os.cpu_count()} CPUs during this run; with "
            f"{THREADS} threads the loops of small forward passes slow down far more than the rest under contention "
            "(the Distiller ratio is inflated): rerun when the machine is idle"
        )
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
