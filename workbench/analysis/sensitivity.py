"""Per-layer sensitivity: how much the metric moves when one layer (or one coupled group) is pruned.

Exact mode prunes one row at a time at each ratio and evaluates; the numbers equal a Distiller-style loop
(deepcopy, prune one layer, evaluate) but cost far less: the model is never copied or changed (masked
variants are structural clones sharing all other weights), each row is scored once for all ratios, and
only the part of the network downstream of the pruned layer re-runs on cached activations (torch.fx; models
it cannot trace, such as Hugging Face models called with keyword inputs, replay the recorded outputs of the module
calls that finish before the pruned layer runs, `_replay`, where that measured faster, else run full passes),
optionally the ratios of one row batched into one pass (`_points`).
Estimate mode predicts the loss change of every point from one forward/backward pass (first-order Taylor,
optionally plus a diagonal-Fisher second-order term) and says how far to trust it: its agreement with exact
loss changes on a few sampled cells (`_estimate`). Refine mode starts from the estimate and replaces cells with
exact loss changes, the ones that matter first, until stopped or done (`_refine`).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..adapter import Adapter
from ..errors import DataError, GranularityError, WorkbenchError
from ..evaluate import MetricLike, check_metric, eval_mode
from ..masks.granularity import get_granularity
from ._estimate import (
    _grads,
    _squared_sample_grads,
    estimate_values,
    pick_cells,
    resolution,
    scale_ratio,
    trust_figure,
)
from ._exact import _exact
from ._points import PointEvaluator
from ._rows import Row, rows_for

__all__ = ["AnalysisError", "Row", "SensitivityResult", "refine_steps", "rows_for", "sensitivity"]

_ = (_grads, _squared_sample_grads)  # kept importable from here (tests, older callers)
TRUST_CELLS = 8


class AnalysisError(WorkbenchError):
    """An analysis failed at a named point; `partial` holds what was computed before."""

    def __init__(self, message: str, partial: Any = None):
        super().__init__(message)
        self.partial = partial


@dataclass(frozen=True)
class SensitivityResult:
    """`values[i, j]`: metric change (pruned minus baseline) when row `layers[i]` alone is pruned to
    `ratios[j]`. In estimate mode the values are predicted loss changes. NaN: not computed (interrupted).

    `exact[i, j]`: whether the cell holds a measured (not predicted) value: all computed cells of an exact scan,
    none of an estimate, the refined ones of a refine scan. `trust` in [0, 1]: how far the predicted cells can be
    trusted (1.0 for exact scans; for estimates their rank agreement with exact values on a few sampled cells, see
    `workbench.analysis._estimate`), None if not measured; `scale`: mean |estimated| / mean |exact| on those
    cells (1: the right magnitude). `checks`: the sampled cells as ``(row, column, estimated, exact)``.
    `estimate`: in refine mode, the estimate the scan started from; `fill`: how the cells not measured yet were
    predicted from the exact ones, ``"log-linear"`` or ``"corrected"`` (the estimate corrected by them; see
    `workbench.analysis._refine.fill_map`)."""

    layers: tuple[str, ...]
    members: tuple[tuple[str, ...], ...]
    ratios: np.ndarray
    values: np.ndarray
    baseline: float
    metric_name: str
    higher_is_better: bool
    granularity: str
    criterion: str
    mode: str
    seconds: float = 0.0
    complete: bool = True
    engine: str = ""
    exact: np.ndarray | None = None
    trust: float | None = None
    checks: tuple[tuple[int, int, float, float], ...] = ()
    scale: float | None = None
    estimate: np.ndarray | None = None
    fill: str | None = None

    @property
    def units(self) -> str:
        return f"Δ{self.metric_name}"

    def row(self, layer: str) -> int:
        for i, (label, members) in enumerate(zip(self.layers, self.members)):
            if layer == label or layer in members:
                return i
        raise KeyError(f"{layer!r} is not in this sensitivity result; rows: {list(self.layers)}")

    def predict(self, layer: str, ratio: float) -> float:
        """The metric change at `ratio` for `layer`, linearly interpolated (0 at ratio 0)."""
        i = self.row(layer)
        xs = np.concatenate([[0.0], self.ratios])
        ys = np.concatenate([[0.0], self.values[i]])
        return float(np.interp(ratio, xs, ys))

    def to_dict(self) -> dict[str, Any]:
        return {
            "layers": list(self.layers),
            "members": [list(m) for m in self.members],
            "ratios": self.ratios.tolist(),
            "values": [[None if math.isnan(v) else v for v in row] for row in self.values.tolist()],
            "baseline": self.baseline,
            "metric_name": self.metric_name,
            "higher_is_better": self.higher_is_better,
            "granularity": self.granularity,
            "criterion": self.criterion,
            "mode": self.mode,
            "seconds": self.seconds,
            "complete": self.complete,
            "engine": self.engine,
            "exact": None if self.exact is None else np.asarray(self.exact, dtype=bool).tolist(),
            "trust": self.trust,
            "checks": [list(c) for c in self.checks],
            "scale": None if self.scale is None or math.isnan(self.scale) else self.scale,
            "estimate": None if self.estimate is None else self.estimate.tolist(),
            "fill": self.fill,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SensitivityResult:
        d = dict(d)
        d["layers"] = tuple(d["layers"])
        d["members"] = tuple(tuple(m) for m in d["members"])
        d["ratios"] = np.asarray(d["ratios"], dtype=float)
        d["values"] = np.asarray([[math.nan if v is None else v for v in r] for r in d["values"]], dtype=float)
        if d.get("exact") is not None:
            d["exact"] = np.asarray(d["exact"], dtype=bool).reshape(d["values"].shape)
        d["checks"] = tuple((int(i), int(j), float(e), float(x)) for i, j, e, x in d.get("checks", ()))
        if d.get("estimate") is not None:
            d["estimate"] = np.asarray(d["estimate"], dtype=float).reshape(d["values"].shape)
        return cls(**d)

    def to_pandas(self):
        import pandas as pd

        return pd.DataFrame(self.values, index=list(self.layers), columns=[f"{r:g}" for r in self.ratios])


def _metric_value(adapter: Adapter, outputs: Iterable, metric: MetricLike) -> float:
    acc = adapter.accumulator()
    for out, x, y in outputs:
        acc.add(out, x, y)
    return acc.result(metric)["metric"]


def sensitivity(
    bench,
    ratios: Iterable[float] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
    granularity: str = "weight",
    criterion: str = "magnitude",
    *,
    layers: Sequence[str] | None = None,
    data: Iterable | None = None,
    metric: MetricLike | None = None,
    mode: str = "exact",
    second_order: bool = False,
    executor: Executor | None = None,
    progress: Callable[[int, int], None] | bool | None = True,
    engine: str = "auto",
    trust_cells: int = TRUST_CELLS,
    around: Any = None,
    budget: float | None = None,
    time_limit: float | None = None,
    stop: Callable[[], bool] | None = None,
    on_update: Callable[[SensitivityResult], None] | None = None,
) -> SensitivityResult:
    """Metric change per row (layer or coupled group) and ratio; see the module docstring.

    ``mode="exact"`` measures every cell; ``"estimate"`` predicts loss changes from one gradient pass and measures
    `trust_cells` sampled cells exactly for its `trust` figure (0: no check); ``"refine"`` starts from the estimate
    and measures cells (loss changes) in order of expected impact: cells at or next to each row's ratio in `around`
    (a `Plan` or ``{layer: ratio}``; default: the bench's current state) first, then by predicted magnitude.
    It stops when all are measured, when `budget` (a share of the cells) are, after `time_limit` seconds, when
    `stop()` returns True, or on Ctrl-C (or a `progress` callback raising KeyboardInterrupt), and returns the map
    with `exact` marking the measured cells; `on_update(result)` is called after each measured cell."""
    ratios_arr = np.asarray(list(ratios), dtype=float)
    if ratios_arr.size == 0:
        raise WorkbenchError("sensitivity needs at least one ratio, e.g. ratios=np.linspace(0.1, 0.9, 9)")
    bad = [r for r in ratios_arr if not (0.0 <= r < 1.0)]
    if bad:
        raise WorkbenchError(f"sensitivity ratios must be in [0, 1), got {bad}")
    if engine not in ("auto", "suffix", "batched", "replay", "full"):
        raise WorkbenchError(f"engine must be 'auto', 'suffix', 'batched', 'replay' or 'full', got {engine!r}")
    if mode not in ("exact", "estimate", "refine"):
        raise WorkbenchError(f"mode must be 'exact', 'estimate' or 'refine', got {mode!r}")
    if budget is not None and not (0.0 <= budget <= 1.0):
        raise WorkbenchError(f"budget is the share of cells to measure, in [0, 1]; got {budget}")
    if trust_cells < 0:
        raise WorkbenchError(f"trust_cells must be >= 0 (0: no check), got {trust_cells}")
    data = data if data is not None else bench.calib
    if data is None:
        raise DataError("sensitivity needs data: pass data= or create the Workbench with data")
    if mode == "refine":
        if metric is not None and metric != "loss":
            raise WorkbenchError(
                f"refine mode fills an estimate of loss changes with measured loss changes, so its metric is 'loss'; "
                f"got metric={metric!r}: leave metric out (or scan with mode='exact' for {metric!r})"
            )
        metric = "loss"
    metric = metric if metric is not None else bench.metric
    check_metric(metric)
    from ..criteria import get_criterion

    get_criterion(criterion)
    fixed = get_granularity(granularity).fixed_ratio
    if fixed is not None and any(abs(r - fixed) > 1e-9 for r in ratios_arr):
        raise GranularityError(
            f"granularity {granularity!r} keeps a fixed share of every group, so its sparsity is {fixed:g}; scan it "
            f"with ratios=[{fixed:g}] (or compare patterns: '1:4' = 0.75, '2:8' = 0.75)"
        )
    t0 = time.perf_counter()
    rows = rows_for(bench, granularity, criterion, layers)
    if mode == "estimate":
        return _estimate(
            bench, rows, ratios_arr, data, second_order, granularity, criterion, t0, progress, trust_cells, engine
        )
    if mode == "refine":
        from ._refine import refine_steps as steps

        last = None
        gen = steps(
            bench, rows, ratios_arr, data, second_order, granularity, criterion, t0, progress, engine,
            trust_cells=trust_cells, around=around, budget=budget, time_limit=time_limit, stop=stop,
        )  # fmt: skip
        try:
            for last in gen:
                if on_update is not None:
                    on_update(last)
        except KeyboardInterrupt:
            gen.close()
            if last is None:
                raise
            warnings.warn("sensitivity refine interrupted: returning the map refined so far", stacklevel=3)
        return replace(last, seconds=time.perf_counter() - t0)
    return _exact(bench, rows, ratios_arr, data, metric, granularity, criterion, executor, progress, engine, t0)


def refine_steps(bench, ratios=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9), granularity="weight", criterion="magnitude",
                 **kwargs: Any):  # fmt: skip
    """Refine mode as a generator: yields the map after the estimate and after each measured cell (the caller
    stops by leaving the loop). Takes `sensitivity`'s keywords (not `mode`, `metric`, `on_update`)."""
    from ._refine import refine_steps as steps

    ratios_arr = np.asarray(list(ratios), dtype=float)
    rows = rows_for(bench, granularity, criterion, kwargs.pop("layers", None))
    data = kwargs.pop("data", None)
    data = data if data is not None else bench.calib
    with bench.store.lock:
        yield from steps(
            bench, rows, ratios_arr, data, kwargs.pop("second_order", False), granularity, criterion,
            time.perf_counter(), kwargs.pop("progress", None), kwargs.pop("engine", "auto"), **kwargs,
        )  # fmt: skip


def _estimate(bench, rows, ratios, data, second_order, granularity, criterion, t0, progress, trust_cells, engine):
    """Predicted loss changes (`_estimate.estimate_values`) and their trust figure from `trust_cells` cells
    measured exactly. `progress` counts batches, then checked cells (a callback may raise to stop)."""
    values, checks, ev = _estimate_and_checks(
        bench, rows, ratios, data, second_order, granularity, criterion, progress, trust_cells, engine
    )
    trust, scale = _trust(bench, checks, ev)
    return _result(
        rows,
        ratios,
        values,
        0.0,
        "loss (estimated)",
        False,
        granularity,
        criterion,
        "estimate",
        t0,
        True,
        "first-order Taylor" + (" + diagonal Fisher" if second_order else ""),
        trust=trust,
        checks=tuple(checks),
        scale=scale,
    )


def _trust(bench, checks, ev) -> tuple[float | None, float | None]:
    """The trust figure and scale of an estimate from its checked cells (None, None without any); changes below
    what the exact measurement resolves count as zero (`_estimate.resolution`)."""
    if not checks:
        return None, None
    est, exact = [c[2] for c in checks], [c[3] for c in checks]
    return trust_figure(est, exact, resolution(bench.model, ev.baseline)), scale_ratio(est, exact)


def _estimate_and_checks(bench, rows, ratios, data, second_order, granularity, criterion, progress, k, engine):
    """(estimated values, [(i, j, estimated, exact)] on `k` sampled cells, the exact PointEvaluator or None)."""
    try:
        n_batches = len(data)
    except TypeError:
        n_batches = 0
    cells = pick_cells(len(rows), len(ratios), k) if k else []
    total = n_batches + len(cells)
    bar = _bar(progress, total, f"sensitivity estimate ({granularity}/{criterion})")
    done = [0]

    def step(n: int, close: bool = False) -> None:
        done[0] += n
        bar(n, close)

    tick = (lambda: progress(done[0], total)) if callable(progress) else None
    try:
        values = estimate_values(bench, rows, ratios, data, second_order, step, tick)
        checks, ev = [], None
        if cells:
            with eval_mode(bench.model):
                ev = PointEvaluator(bench, rows, ratios, data, "loss", engine, first=[i for i, _ in cells])
                for i, j in cells:
                    checks.append((i, j, float(values[i, j]), ev.point(i, j)))
                    step(1)
    finally:
        bar(0, close=True)
    return values, checks, ev


def _result(
    rows, ratios, values, baseline, metric_name, higher, granularity, criterion, mode, t0, complete, engine, **extra
):
    if "exact" not in extra:  # an exact scan: every computed cell is measured
        extra["exact"] = ~np.isnan(values) if mode == "exact" else np.zeros(values.shape, dtype=bool)
    if mode == "exact":
        extra.setdefault("trust", 1.0)
    return SensitivityResult(
        layers=tuple(r.label for r in rows),
        members=tuple(r.members for r in rows),
        ratios=ratios.copy(),
        values=values.copy(),
        baseline=float(baseline),
        metric_name=metric_name,
        higher_is_better=higher,
        granularity=granularity,
        criterion=criterion,
        mode=mode,
        seconds=time.perf_counter() - t0,
        complete=complete,
        engine=engine,
        **extra,
    )


def _bar(progress, total: int, desc: str):
    """A callable `(n, close=False)`: advances a tqdm.auto bar and/or calls the user's callback."""
    done = [0]
    tq = None
    if progress is True:
        from tqdm.auto import tqdm

        tq = tqdm(total=total, desc=desc, leave=False)

    def step(n: int, close: bool = False) -> None:
        done[0] += n
        if tq is not None:
            tq.update(n)
            if close:
                tq.close()
        if callable(progress) and n:
            progress(done[0], total)

    return step
