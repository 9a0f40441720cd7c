"""Shared by the tests of workbench/viz/: real results from the digits CNN (computed once for the package),
synthetic ones with 12 or 60 rows, and helpers that save a figure under tests/artifacts/viz/ (git-ignored) for a
person to look at and read an axis's tick labels."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

import workbench as wb
from workbench.analysis.allocate import Allocation
from workbench.analysis.connectivity import ConnectivityResult, PathResult
from workbench.analysis.entropy import EntropyResult
from workbench.analysis.profile import ProfileResult
from workbench.analysis.sensitivity import SensitivityResult
from workbench.plan import Plan

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "viz"
SIZES = (12, 60)


@pytest.fixture
def no_figure_leaks():
    """Close every figure before and after the test (test modules use it through pytestmark)."""
    plt.close("all")
    yield
    plt.close("all")


def save(fig, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    fig.savefig(ARTIFACTS / f"{name}.png", dpi=70 if name.startswith("all_") else 90, bbox_inches="tight")


def labels(ax, axis: str = "y") -> list[str]:
    ticks = ax.get_yticklabels() if axis == "y" else ax.get_xticklabels()
    return [t.get_text() for t in ticks if t.get_text()]


@pytest.fixture(scope="package")
def real():
    """Sensitivity and allocation on the dense digits CNN; the other analyses after a filter + global step."""
    model, data = wb.demo.load("digits-cnn")
    bench = wb.Workbench(model, data.val, metric="accuracy")
    out = {
        "sens": bench.sensitivity((0.3, 0.6), granularity="filter", criterion="l1", progress=False),
        "est": bench.sensitivity((0.3, 0.6), granularity="filter", criterion="l1", mode="estimate", progress=False),
    }
    bench.allocate(0.4, target="flops", ratios=(0.3, 0.6))
    out["alloc"] = bench.last_allocation
    bench.apply(wb.Plan.uniform(0.5, granularity="filter", criterion="l1"))
    bench.apply(wb.Plan.global_(0.8))
    out.update(
        ent=bench.entropy(),
        conn=bench.connectivity("features.3"),
        paths=bench.paths(),
        prof=bench.profile(repeats=1),
    )
    bench.reset()
    return out


def synthetic(n: int, seed: int = 0) -> dict:
    """Results of every kind with `n` rows: NaN cells, coupled rows, dead units, a stopped path count."""
    rng = np.random.default_rng(seed)
    layers = tuple(f"blocks.{i // 3}.conv{i % 3}" for i in range(n))
    members = tuple((name, f"{name}.bn", "head") if i % 7 == 0 else (name,) for i, name in enumerate(layers))
    ratios = np.linspace(0.1, 0.9, 9)
    values = -np.cumsum(rng.uniform(0, 0.05, (n, 9)), axis=1) + rng.normal(0, 0.01, (n, 9))
    values[n // 2 :, 6:] = np.nan  # interrupted scan
    sens = SensitivityResult(layers, members, ratios, values, 0.97, "accuracy", True, "filter", "l1", "exact")
    units = tuple(rng.uniform(0, 5, 16 + i % 5) for i in range(n))
    dead = tuple(rng.uniform(size=len(u)) < 0.1 for u in units)
    units = tuple(np.where(d, 0.0, u) for u, d in zip(units, dead))
    ent = EntropyResult(
        layers,
        units,
        dead,
        np.array([u.mean() for u in units]),
        rng.uniform(3, 5, n),
        32,
        500,
    )
    before = rng.uniform(0.01, 2.0, (64, 48)) ** 2
    weight = np.where(rng.uniform(size=before.shape) < 0.6, 0.0, before)
    weight[[3, 17, 40]] = 0.0
    weight[:, [5, 6]] = 0.0
    alive = weight != 0
    conn = ConnectivityResult(
        "blocks.3.conv1", weight, before, (weight == 0) & (before != 0), ~alive.any(1), ~alive.any(0)
    )
    dense_paths = np.cumsum(rng.uniform(0.5, 2.0, n))
    now_paths = dense_paths - np.cumsum(rng.uniform(0, 0.3, n))
    paths = PathResult(layers, now_paths, dense_paths, stopped=f"{layers[-1]}.custom_op")
    params = rng.integers(100, 100_000, n)
    nonzeros = (params * rng.uniform(0.1, 1.0, n)).astype(int)
    flops = params * rng.integers(1, 200, n).astype(float)
    prof = ProfileResult(
        layers,
        ("conv",) * n,
        params,
        nonzeros,
        flops,
        flops * nonzeros / params,
        rng.uniform(0.01, 2.0, n),
        params * 4,
        params * 4,
        int(flops.sum() * 1.1),
        int((flops * nonzeros / params).sum()),
        float(rng.uniform(5, 20)),
        int(params.sum()),
        64,
        "cpu",
        5,
    )
    chosen = rng.uniform(0, 0.9, n)
    removed = chosen * flops
    alloc = Allocation(
        Plan({}), layers, chosen, removed, rng.uniform(0, 0.05, n), float(flops.sum()), "flops", 0.5, removed.sum()
    )
    return {"sens": sens, "ent": ent, "conn": conn, "paths": paths, "prof": prof, "alloc": alloc}


@pytest.fixture(scope="package", params=SIZES, ids=[f"{n}rows" for n in SIZES])
def synth(request):
    return request.param, synthetic(request.param)


@pytest.fixture(scope="package", params=["real", *SIZES], ids=["real", *(f"{n}rows" for n in SIZES)])
def results(request):
    """(name, results): the digits CNN's, then the synthetic ones."""
    if request.param == "real":
        return "real", request.getfixturevalue("real")
    return f"synth{request.param}", synthetic(request.param)
