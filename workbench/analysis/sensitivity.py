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
from concurrent.futures import Executor, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..adapter import Adapter
from ..errors import DataError, GranularityError, WorkbenchError
from ..evaluate import MetricLike, check_metric, eval_mode, higher_is_better
from ..masks.granularity import get_granularity
from ..masks.select import Ranking, _scores, group_ranking, pattern_masks
from ._estimate import _grads, _squared_sample_grads, estimate_values, pick_cells, scale_ratio, trust_figure
from ._points import PointEvaluator
from ._ranking import PrefixRanking

__all__ = ["AnalysisError", "Row", "SensitivityResult", "refine_steps", "rows_for", "sensitivity"]

_ = (_grads, _squared_sample_grads)  # kept importable from here (tests, older callers)
TRUST_CELLS = 8


class AnalysisError(WorkbenchError):
    """An analysis failed at a named point; `partial` holds what was computed before."""

    def __init__(self, message: str, partial: Any = None):
        super().__init__(message)
        self.partial = partial


@dataclass(frozen=True)
class Row:
    """One unit of decision: a layer, or layers whose channels are coupled and must be pruned together."""

    label: str
    members: tuple[str, ...]
    ranking: Ranking = field(repr=False, compare=False)


@dataclass(frozen=True)
class SensitivityResult:
    """`values[i, j]`: metric change (pruned minus baseline) when row `layers[i]` alone is pruned to
    `ratios[j]`. In estimate mode the values are predicted loss changes. NaN: not computed (interrupted).

    `exact[i, j]`: whether the cell holds a measured (not predicted) value: all computed cells of an exact scan,
    none of an estimate, the refined ones of a refine scan. `trust` in [0, 1]: how far the predicted cells can be
    trusted (1.0 for exact scans; for estimates their rank agreement with exact values on a few sampled cells, see
    `workbench.analysis._estimate`), None if not measured; `scale`: mean |estimated| / mean |exact| on those
    cells (1: the right magnitude). `checks`: the sampled cells as ``(row, column, estimated, exact)``.
    `estimate`: in refine mode, the estimate the scan started from (its other cells are predicted from the exact
    ones, see `workbench.analysis._refine.fill_map`)."""

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


def rows_for(bench, granularity: str, criterion: str, layers: Sequence[str] | None = None) -> list[Row]:
    """The rows a scan covers: targets (unstructured) or connected coupled groups (structured)."""
    from ..masks.select import DEFAULT_KINDS

    g = get_granularity(granularity)
    targets = bench.targets
    if layers is not None:
        from ..masks.select import _check_entry
        from ..plan import LayerPlan

        for name in layers:  # the same reasons a plan naming the layer gets (tied weights, patterns, kinds)
            _check_entry(targets[name], LayerPlan(g.fixed_ratio or 0.5, g.name, criterion), "layer")
    kinds = DEFAULT_KINDS + g.default_kinds
    chosen = [t for t in targets if (t.name in layers if layers is not None else t.kind in kinds)]
    chosen = [t for t in chosen if t.supports(g.name)]
    if not chosen:
        raise GranularityError(f"no layer supports granularity {g.name!r}; see bench.targets")
    rows: list[Row] = []
    model, store, seed, data, cache = bench.model, bench.store, bench.seed, bench.calib, {}
    if g.name == "layer":  # one row per residual branch: removed whole at any ratio > 0
        names = {t.name for t in chosen}
        for b in bench.groups.branches.values():
            members = tuple(m for m in b.modules if m in names)
            if members:
                masks = {p: torch.ones_like(model.get_parameter(p), dtype=torch.bool) for p in b.params}
                rows.append(Row(members[0], members, _branch_ranking(masks)))
        return rows
    if not g.structured:
        for t in chosen:
            if g.mask_fn is not None:  # N:M, blocks or a registered per-tensor pattern: its entry selects
                at = pattern_masks(model, store, t, g, criterion, seed, (data, cache))
                fixed = g.fixed_ratio  # N:M fixes the sparsity: one mask, at the pattern's ratio
                rows.append(Row(t.name, (t.name,), _fixed_ranking(at(fixed), fixed) if fixed else _per_ratio(at)))
            else:  # the masks weight_ranking gives, without sorting a 100M-weight layer (see _ranking)
                env = (data, cache)
                scores = [_scores(model, store, t, p, criterion, seed, env) for p in t.param_names()]
                rows.append(Row(t.name, (t.name,), PrefixRanking(t.param_names(), scores)))
        return rows
    # structured: connected components of targets that share a coupled group
    comp: dict[str, set[str]] = {}
    for t in targets:
        for gid in t.groups:
            if bench.groups.groups[gid].unit == g.unit:  # o_proj is in a head group and the hidden group: apart
                comp.setdefault(gid, set()).update(bench.groups.groups[gid].producers)
    merged: list[tuple[set[str], set[str]]] = []  # (group ids, producers)
    for gid, prods in comp.items():
        hit = [m for m in merged if m[1] & prods]
        new = ({gid}, set(prods))
        for m in hit:
            new[0].update(m[0])
            new[1].update(m[1])
            merged.remove(m)
        merged.append(new)
    wanted = {t.name for t in chosen}
    order = {t.name: i for i, t in enumerate(targets)}
    for gids, prods in sorted(merged, key=lambda m: min(order[p] for p in m[1])):
        if not prods & wanted or not all(targets[p].supports(g.name) for p in prods):
            continue
        rankings = [
            group_ranking(model, store, bench.groups.groups[gid], criterion, seed, data, cache) for gid in sorted(gids)
        ]
        members = tuple(sorted(prods, key=order.__getitem__))
        rows.append(Row(members[0], members, _merged_ranking(rankings)))
    if not rows:
        raise GranularityError(f"no coupled group can be pruned by {g.name!r} with these layers")
    return rows


def _fixed_ranking(masks: dict[str, Tensor], ratio: float) -> Ranking:
    """A row whose pattern (N:M) allows one ratio only: its masks at that ratio, an error at any other."""

    class _Fixed(Ranking):
        def masks(self, r: float) -> dict[str, Tensor]:
            if abs(r - ratio) > 1e-9:
                raise GranularityError(f"this N:M pattern fixes the sparsity at {ratio:g}; got ratio {r:g}")
            return dict(masks)

    first = next(iter(masks.values()))
    return _Fixed(torch.zeros(0, dtype=torch.long), first.numel(), lambda chosen: dict(masks))


def _per_ratio(at: Callable[[float], dict[str, Tensor]]) -> Ranking:
    """A row whose masks its granularity's `mask_fn` selects at each ratio (blocks, a registered pattern)."""

    class _PerRatio(Ranking):
        def masks(self, r: float) -> dict[str, Tensor]:
            return at(r)

    return _PerRatio(torch.zeros(0, dtype=torch.long), 0, lambda chosen: {})


def _branch_ranking(masks: dict[str, Tensor]) -> Ranking:
    """A residual branch: gone at any ratio above 0 (a branch is one unit)."""

    class _Branch(Ranking):
        def masks(self, r: float) -> dict[str, Tensor]:
            return dict(masks) if r > 0 else {}

    return _Branch(torch.zeros(1, dtype=torch.long), 1, lambda chosen: dict(masks))


def _merged_ranking(rankings: list[Ranking]) -> Ranking:
    if len(rankings) == 1:
        return rankings[0]

    class _Many(Ranking):
        def masks(self, ratio: float) -> dict[str, Tensor]:
            out: dict[str, Tensor] = {}
            for r in rankings:
                for k, v in r.masks(ratio).items():
                    out[k] = v if k not in out else out[k] | v
            return out

    return _Many(rankings[0].order, rankings[0].n, rankings[0].to_masks)


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


def _exact(bench, rows, ratios, data, metric, granularity, criterion, executor, progress, engine, t0):
    model = bench.model
    values = np.full((len(rows), len(ratios)), np.nan)
    metric_name = metric if isinstance(metric, str) else getattr(metric, "__name__", "metric")
    higher = higher_is_better(metric)
    from .distributed import dask_client

    client = dask_client(executor)  # a Dask cluster: full forward passes on each worker's copy (and the baseline)
    with eval_mode(model):
        ev = PointEvaluator(bench, rows, ratios, data, metric, engine, client)
        baseline = ev.baseline
        if client is not None:
            jobs = [(i, j) for i in range(len(rows)) for j in range(len(ratios))]
            values, complete = _dask_points(bench, client, rows, ratios, jobs, data, metric, baseline, progress, values)
            return _result(
                rows,
                ratios,
                values,
                baseline,
                metric_name,
                higher,
                granularity,
                criterion,
                "exact",
                t0,
                complete,
                "dask (full forward on each worker's copy)",
            )
        jobs = [(i, js) for i in range(len(rows)) for js in ev.chunks(i, list(range(len(ratios))))]
        own = executor is None
        pool = ThreadPoolExecutor(max_workers=max(1, min(4, torch.get_num_threads()))) if own else executor
        bar = _bar(progress, len(rows) * len(ratios), f"sensitivity ({granularity}/{criterion})")
        futures = {}
        complete = True
        try:
            futures = {pool.submit(ev.points, i, js): (i, js) for i, js in jobs}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=0.1, return_when="FIRST_COMPLETED")
                for f in done:
                    i, js = futures[f]
                    for j, v in zip(js, f.result()):
                        values[i, j] = v
                        bar(1)
        except KeyboardInterrupt:
            complete = False
            for f in futures:
                f.cancel()
            warnings.warn(
                "sensitivity scan interrupted: returning the partial result (NaN = not computed)", stacklevel=3
            )
        except BaseException as e:
            for f in futures:
                f.cancel()
            partial = _result(
                rows, ratios, values, baseline, metric_name, higher, granularity, criterion, "exact", t0, False, ""
            )
            if isinstance(e, AnalysisError):
                e.partial = partial
                raise
            raise AnalysisError(f"sensitivity scan failed: {type(e).__name__}: {e}", partial) from e
        finally:
            bar(0, close=True)
            if own:
                pool.shutdown(wait=True, cancel_futures=True)
    return _result(
        rows, ratios, values, baseline, metric_name, higher, granularity, criterion, "exact", t0, complete, ev.engine
    )


def _estimate(bench, rows, ratios, data, second_order, granularity, criterion, t0, progress, trust_cells, engine):
    """Predicted loss changes (`_estimate.estimate_values`) and their trust figure from `trust_cells` cells
    measured exactly. `progress` counts batches, then checked cells (a callback may raise to stop)."""
    values, checks, _ = _estimate_and_checks(
        bench, rows, ratios, data, second_order, granularity, criterion, progress, trust_cells, engine
    )
    trust = trust_figure([c[2] for c in checks], [c[3] for c in checks]) if checks else None
    scale = scale_ratio([c[2] for c in checks], [c[3] for c in checks]) if checks else None
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
                ev = PointEvaluator(bench, rows, ratios, data, "loss", engine)
                for i, j in cells:
                    checks.append((i, j, float(values[i, j]), ev.point(i, j)))
                    step(1)
    finally:
        bar(0, close=True)
    return values, checks, ev


def _dask_points(bench, client, rows, ratios, jobs, data, metric, baseline, progress, values):
    """Run the points on a Dask cluster (`workbench.analysis.distributed`); returns (values, complete)."""
    from distributed import as_completed

    from .distributed import scatter, submit_points

    model_f, data_f = scatter(client, bench.model, data)
    masks_of = lambda i, j: {k: v.cpu() for k, v in rows[i].ranking.masks(float(ratios[j])).items()}  # noqa: E731
    futures = submit_points(
        client, model_f, data_f, jobs, masks_of, metric, bench.adapter.task_name, bench.adapter.batch_fn
    )
    bar = _bar(progress, len(jobs), "sensitivity (dask)")
    try:
        for f in as_completed(list(futures)):
            i, j = futures[f]
            value = f.result()
            if not math.isfinite(value):
                raise AnalysisError(f"the metric returned {value} for layer {rows[i].label!r} at ratio {ratios[j]:g}")
            values[i, j] = value - baseline
            bar(1)
    except KeyboardInterrupt:
        client.cancel(list(futures))
        warnings.warn("sensitivity scan interrupted: returning the partial result (NaN = not computed)", stacklevel=4)
        return values, False
    except BaseException as e:
        client.cancel(list(futures))
        if isinstance(e, AnalysisError):
            raise
        raise AnalysisError(f"sensitivity scan failed on the Dask cluster: {type(e).__name__}: {e}") from e
    finally:
        bar(0, close=True)
        client.cancel([model_f, data_f])
    return values, True


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
