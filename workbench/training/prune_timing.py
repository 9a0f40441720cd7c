"""When to prune: before, during or after training, at equal final sparsity and an equal budget of epochs.

`compare_timing` runs each arm on the live model from the bench's current state (meant to be untrained; a Workbench
or its `State`), measures it, and goes back to the start with the bench's exact undo before the next arm, so every arm starts from the same
weights bit for bit and the bench ends where it started (the last arm's steps stay in the history, undone).

Arms (each trains `epochs` epochs in total):

- ``"dense"``: no pruning (the reference);
- ``"pre"``: prune at initialisation (``at_init`` criterion: iterative ``"synflow"`` by default, or any registered
  criterion such as ``"snip"``/``"grasp"``/``"magnitude"`` in one shot), then train;
- ``"during"``: gradual pruning with the AGP schedule while training (`gradual`);
- ``"post"``: train dense for `dense_epochs`, prune in one shot by magnitude, fine-tune the rest;
- ``"post-iterative"``: train dense for `dense_epochs`, then `rounds` prune/fine-tune rounds in the rest.

>>> import torch, workbench as wb
>>> torch.manual_seed(0) and None
>>> model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))
>>> data = [(torch.randn(16, 8), torch.randint(0, 3, (16,))) for _ in range(4)]
>>> bench = wb.Workbench(model, data, train=data)
>>> res = wb.training.compare_timing(bench, 0.8, epochs=2, methods=("pre", "post"), at_init="snip", lr=1e-2)
>>> [r["method"] for r in res.rows], [round(r["sparsity"], 2) for r in res.rows], bench.store.position
(['pre', 'post'], [0.8, 0.8], 0)
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._deprecate import renamed
from .._text import table_lines
from ..plan import Plan
from ..state import as_state
from ._loop import TrainingError, check, pool
from .at_init import synflow_prune
from .finetune import finetune, training_data
from .schedules import gradual, iterative

__all__ = ["METHODS", "TimingResult", "compare_timing", "plot_timing"]

METHODS = ("dense", "pre", "during", "post", "post-iterative")


@dataclass(frozen=True)
class TimingResult:
    """One row per arm (plain dicts: method, what it did, metric after pruning and at the end, sparsity, epochs,
    seconds) and its curves: ``curves[method] = {"epoch", "metric", "sparsity"}`` (numpy arrays; epoch 0 is the
    state before training, after any pruning at initialisation)."""

    rows: tuple[dict[str, Any], ...]
    curves: dict[str, dict[str, np.ndarray]]
    sparsity: float
    epochs: int
    metric_name: str
    info: dict[str, Any] = field(default_factory=dict)

    def table(self) -> str:
        head = (
            "method",
            "schedule",
            f"{self.metric_name} pruned",
            f"{self.metric_name} final",
            "sparsity",
            "epochs",
            "s",
        )
        lines = [head]
        for r in self.rows:
            pruned = (
                "-" if r["pruned_metric"] is None or math.isnan(r["pruned_metric"]) else f"{r['pruned_metric']:.4f}"
            )
            lines.append(
                (
                    r["method"],
                    r["what"],
                    pruned,
                    f"{r['metric']:.4f}",
                    f"{r['sparsity']:.1%}",
                    f"{r['epochs']:g}",
                    f"{r['seconds']:.1f}",
                )
            )
        return "\n".join(table_lines(lines, sep=" | ", rule="-+-"))

    def __str__(self) -> str:
        return self.table()

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": [dict(r) for r in self.rows],
            "curves": {m: {k: v.tolist() for k, v in c.items()} for m, c in self.curves.items()},
            "sparsity": self.sparsity,
            "epochs": self.epochs,
            "metric_name": self.metric_name,
            "info": dict(self.info),
        }

    def to_pandas(self):
        import pandas as pd

        return pd.DataFrame(list(self.rows))


class _Arm:
    """Curves of one arm assembled from the procedures it runs, with epochs offset across them."""

    def __init__(self, state, names):
        self.state, self.names = state, names
        self.epoch: list[float] = [0.0]
        self.metric: list[float] = [_metric(state)]
        self.sparsity: list[float] = [_sparsity(state, names)]
        self.done = 0.0
        self.pruned_metric: float | None = None

    def point(self) -> None:  # a pruning step at the current epoch
        self.epoch.append(self.done)
        self.metric.append(_metric(self.state))
        self.sparsity.append(_sparsity(self.state, self.names))

    def add(self, r) -> None:
        self.epoch += [self.done + e for e in r.epoch.tolist()]
        self.metric += r.metric.tolist()
        self.sparsity += r.sparsity.tolist()
        self.done += float(r.epoch[-1]) if len(r.epoch) else 0.0

    def curves(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(getattr(self, k), dtype=np.float64) for k in ("epoch", "metric", "sparsity")}


def _metric(state) -> float:
    return float(state.evaluate()["metric"]) if state.data is not None else math.nan


def _sparsity(state, names) -> float:
    total = sum(state.model.get_parameter(n).numel() for n in names)
    return sum(int((state.model.get_parameter(n) == 0).sum()) for n in names) / max(total, 1)


@renamed(sparsity="ratio")
def compare_timing(
    bench,
    ratio: float = 0.9,
    epochs: int = 6,
    *,
    methods: Sequence[str] = ("pre", "during", "post", "post-iterative"),
    at_init: str = "synflow",
    dense_epochs: int | None = None,
    rounds: int = 3,
    steps: int = 10,
    seed: int | None = None,
    progress: Any = False,
    **train: Any,
) -> TimingResult:
    """Prune `bench`'s model (a Workbench or its `State`) to `ratio` (global, unstructured) before, during and after
    training, each arm training `epochs` epochs in total; see the module docstring for the arms. `dense_epochs` (default: half of `epochs`) is the
    dense training of the post-training arms; `rounds` the iterative arm's rounds; `steps` the AGP pruning steps.
    `train` takes ``lr``, ``optimizer``, ``weight_decay``, ``schedule`` (see `finetune`). Returns a `TimingResult`
    with a table (`str(result)`) and curves (`plot_timing`).
    """
    check(ratio, "ratio", lo=0.0, hi=0.999)
    epochs = check(epochs, "epochs", lo=1, lo_open=False, integer=True)
    dense_epochs = epochs // 2 if dense_epochs is None else dense_epochs
    dense_epochs = check(dense_epochs, "dense_epochs", lo=0, hi=epochs - 1, lo_open=False, integer=True)
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise TrainingError(f"methods must be chosen from {METHODS}, got {list(methods)!r}")
    state = as_state(bench)
    training_data(state, None)
    names = pool(state)
    start = state.store.position
    kw = {"seed": seed, "progress": progress, **train}
    rows, curves = [], {}
    rest = epochs - dense_epochs
    for method in methods:
        t0 = time.perf_counter()
        arm = _Arm(state, names)
        try:
            if method == "dense":
                what = f"train {epochs} ep"
                arm.add(finetune(state, epochs, **kw))
            elif method == "pre":
                what = f"{at_init} at init, train {epochs} ep"
                if at_init == "synflow":
                    synflow_prune(state, ratio, progress=False)
                else:
                    state.apply(Plan.global_(ratio, criterion=at_init))
                arm.point()
                arm.pruned_metric = arm.metric[-1]
                arm.add(finetune(state, epochs, **kw))
            elif method == "during":
                what = f"AGP {steps} steps over {epochs} ep"
                arm.add(gradual(state, ratio, steps=steps, epochs=epochs, **kw))
            elif method == "post":
                what = f"train {dense_epochs} ep, one-shot, fine-tune {rest} ep"
                if dense_epochs:
                    arm.add(finetune(state, dense_epochs, **kw))
                state.apply(Plan.global_(ratio))
                arm.point()
                arm.pruned_metric = arm.metric[-1]
                arm.add(finetune(state, rest, **kw))
            else:  # post-iterative
                per = max(1, rest // rounds)
                what = f"train {dense_epochs} ep, {rounds} rounds x {per} ep"
                if dense_epochs:
                    arm.add(finetune(state, dense_epochs, **kw))
                r = iterative(state, ratio, rounds=rounds, finetune_epochs=per, **kw)
                arm.add(r)
                arm.pruned_metric = r.info["events"][0]["pruned_metric"]
            rows.append(
                {
                    "method": method,
                    "what": what,
                    "pruned_metric": arm.pruned_metric,
                    "metric": arm.metric[-1],
                    "sparsity": _sparsity(state, names),
                    "epochs": arm.done,
                    "seconds": time.perf_counter() - t0,
                }
            )
            curves[method] = arm.curves()
        finally:
            state.store.goto_(start)
    metric_name = state.metric if isinstance(state.metric, str) else getattr(state.metric, "__name__", "metric")
    info = {"at_init": at_init, "dense_epochs": dense_epochs, "rounds": rounds, "steps": steps, **train}
    return TimingResult(tuple(rows), curves, ratio, epochs, metric_name, info)


def plot_timing(result: TimingResult, ax=None, *, what: str = "metric"):
    """Plot each arm's metric (or ``what="sparsity"``) against epochs of training; returns the lines.

    Needs matplotlib (``pip install workbench[viz]``); imported only when called.
    """
    import matplotlib.pyplot as plt

    ax = ax or plt.gca()
    lines = []
    for method, c in result.curves.items():
        (line,) = ax.plot(c["epoch"], c[what], marker="o", ms=3, label=method)
        lines.append(line)
    ax.set_xlabel("epochs trained")
    ax.set_ylabel(result.metric_name if what == "metric" else "sparsity")
    ax.set_title(f"pruning before / during / after training, {result.sparsity:.0%} sparsity, {result.epochs} epochs")
    ax.legend()
    return lines
