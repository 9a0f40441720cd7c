"""Per-layer sensitivity: how much the metric moves when one layer (or one coupled group) is pruned.

Exact mode prunes one row at a time at each ratio and evaluates; the numbers equal a Distiller-style loop
(deepcopy, prune one layer, evaluate) but cost far less: the model is never copied or changed (masked
variants are structural clones sharing all other weights), each row is scored once for all ratios, and
only the part of the network downstream of the pruned layer re-runs on cached activations (torch.fx;
models it cannot trace fall back to full passes). Estimate mode predicts the loss change of every point
from one forward/backward pass (first-order Taylor, optionally plus a diagonal-Fisher second-order term).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..adapter import Adapter, logits_of, size, take
from ..errors import DataError, GranularityError, WorkbenchError
from ..evaluate import MetricLike, check_metric, eval_mode, higher_is_better
from ..masks.granularity import get_granularity
from ..masks.select import Ranking, block_ranking, group_ranking, nm_masks, weight_ranking
from ._graph import SuffixRunner, clone_with, full_outputs, masked_params

__all__ = ["AnalysisError", "Row", "SensitivityResult", "rows_for", "sensitivity"]


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
    `ratios[j]`. In estimate mode the values are predicted loss changes. NaN: not computed (interrupted)."""

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
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SensitivityResult:
        d = dict(d)
        d["layers"] = tuple(d["layers"])
        d["members"] = tuple(tuple(m) for m in d["members"])
        d["ratios"] = np.asarray(d["ratios"], dtype=float)
        d["values"] = np.asarray([[math.nan if v is None else v for v in r] for r in d["values"]], dtype=float)
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
            if g.family == "block":  # R x C blocks by summed score, per tensor (as a plan selects them)
                ranks = [
                    block_ranking(model, store, t, p, g.shape, criterion, seed, data, cache) for p in t.param_names()
                ]
                rows.append(Row(t.name, (t.name,), _merged_ranking(ranks)))
            elif g.family == "N:M":  # the pattern fixes the sparsity: one mask, at the pattern's ratio
                masks = {}
                for p in t.param_names():
                    masks.update(nm_masks(model, store, t, p, g.shape, criterion, seed, data, cache))
                rows.append(Row(t.name, (t.name,), _fixed_ranking(masks, g.fixed_ratio)))
            else:
                pairs = [(t, p) for p in t.param_names()]
                rows.append(Row(t.name, (t.name,), weight_ranking(model, store, pairs, criterion, seed, data, cache)))
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
) -> SensitivityResult:
    """Metric change per row (layer or coupled group) and ratio; see the module docstring."""
    ratios_arr = np.asarray(list(ratios), dtype=float)
    if ratios_arr.size == 0:
        raise WorkbenchError("sensitivity needs at least one ratio, e.g. ratios=np.linspace(0.1, 0.9, 9)")
    bad = [r for r in ratios_arr if not (0.0 <= r < 1.0)]
    if bad:
        raise WorkbenchError(f"sensitivity ratios must be in [0, 1), got {bad}")
    if mode not in ("exact", "estimate"):
        raise WorkbenchError(f"mode must be 'exact' or 'estimate', got {mode!r}")
    data = data if data is not None else bench.calib
    if data is None:
        raise DataError("sensitivity needs data: pass data= or create the Workbench with data")
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
        return _estimate(bench, rows, ratios_arr, data, second_order, granularity, criterion, t0, progress)
    return _exact(bench, rows, ratios_arr, data, metric, granularity, criterion, executor, progress, engine, t0)


def _exact(bench, rows, ratios, data, metric, granularity, criterion, executor, progress, engine, t0):
    model, adapter = bench.model, bench.adapter
    values = np.full((len(rows), len(ratios)), np.nan)
    metric_name = metric if isinstance(metric, str) else getattr(metric, "__name__", "metric")
    higher = higher_is_better(metric)
    runner = None
    from .distributed import dask_client

    client = dask_client(executor)  # a Dask cluster: full forward passes on each worker's copy (and the baseline)
    with eval_mode(model):
        if engine in ("auto", "suffix") and isinstance(metric, str) and client is None:
            try:
                runner = SuffixRunner(model, data, adapter=adapter)
            except Exception as e:  # fx cannot trace every model; the fallback is exact too
                if engine == "suffix":
                    raise WorkbenchError(f"the suffix engine cannot run this model: {e}") from e
        baseline = _baseline(adapter, model, data, metric, runner)
        if not math.isfinite(baseline):
            raise AnalysisError(f"the metric is {baseline} on the unpruned model; it must be a finite number")

        def point(i: int, j: int) -> float:
            params = masked_params(model, rows[i].ranking.masks(float(ratios[j])))
            if runner is not None:
                value = _metric_value(adapter, runner.outputs(params), metric)
            elif isinstance(metric, str):
                value = _metric_value(adapter, full_outputs(model, params, data, adapter), metric)
            else:
                clone = clone_with(model, params).eval()
                value = float(metric(clone, data))
            if not math.isfinite(value):
                raise AnalysisError(f"the metric returned {value} for layer {rows[i].label!r} at ratio {ratios[j]:g}")
            return value - baseline

        jobs = [(i, j) for i in range(len(rows)) for j in range(len(ratios))]
        if client is not None:
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
        own = executor is None
        pool = ThreadPoolExecutor(max_workers=max(1, min(4, torch.get_num_threads()))) if own else executor
        bar = _bar(progress, len(jobs), f"sensitivity ({granularity}/{criterion})")
        futures = {}
        complete = True
        try:
            futures = {pool.submit(point, i, j): (i, j) for i, j in jobs}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=0.1, return_when="FIRST_COMPLETED")
                for f in done:
                    i, j = futures[f]
                    values[i, j] = f.result()
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
    eng = "suffix (torch.fx, cached activations)" if runner is not None else "full forward on structural clones"
    return _result(
        rows, ratios, values, baseline, metric_name, higher, granularity, criterion, "exact", t0, complete, eng
    )


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


def _baseline(adapter, model, data, metric, runner) -> float:
    if runner is not None:
        return _metric_value(adapter, runner.outputs({}), metric)
    if isinstance(metric, str):
        return _metric_value(adapter, full_outputs(model, {}, data, adapter), metric)
    return float(metric(model, data))


def _result(rows, ratios, values, baseline, metric_name, higher, granularity, criterion, mode, t0, complete, engine):
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


def _grads(adapter, model, names, params, x, y) -> list[Tensor]:
    """Loss gradients of `params` (named `names`) as float64, also for frozen ones (``requires_grad=False``): the
    model runs on detached leaves through `torch.func.functional_call`, so no flag and no ``.grad`` is touched."""
    from torch.func import functional_call

    leaves = {n: p.detach().requires_grad_(True) for n, p in zip(names, params)}
    args, kwargs = (x, {}) if isinstance(x, (list, tuple)) else (((), x) if isinstance(x, dict) else ((x,), {}))
    loss, count = adapter.loss(functional_call(model, leaves, tuple(args), kwargs), x, y)
    if not loss.requires_grad:  # nothing the loss depends on is among `params`
        return [torch.zeros_like(p, dtype=torch.float64) for p in params], count
    gs = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
    return [torch.zeros_like(p, dtype=torch.float64) if g is None else g.double() for p, g in zip(params, gs)], count


def _squared_sample_grads(adapter, model, names, params, x, y, tick=None) -> list[Tensor]:
    """Per parameter, the sum over the batch's samples of each sample's squared loss gradient. Vectorised
    (torch.func.vmap over per-sample grads) over chunks of at most ~64 MB of gradients, each squared and summed
    before the next (the per-sample gradients of a whole batch are never held at once); models vmap cannot
    batch (recurrent kernels, random ops) take one backward pass per sample instead, with the same result.
    `tick()` is called between chunks (a Stop button's check)."""
    if isinstance(x, Tensor) and x.dim() > 0 and y is not None and y.dim() > 0 and adapter.task is not None:
        task = adapter.task
        try:
            from torch.func import functional_call, grad, vmap

            def loss_one(pd: dict[str, Tensor], xs: Tensor, ys: Tensor) -> Tensor:
                out = logits_of(functional_call(model, pd, (xs.unsqueeze(0),)))
                return task.loss_sum(out, ys.unsqueeze(0), check=False)[0]

            pd = {n: p.detach() for n, p in zip(names, params)}
            chunk = max(1, min(int(y.shape[0]), (1 << 24) // max(1, sum(p.numel() for p in params))))
            per_sample = vmap(grad(loss_one), in_dims=(None, 0, 0))
            acc = [torch.zeros_like(p, dtype=torch.float64) for p in params]
            for start in range(0, int(y.shape[0]), chunk):
                gs = per_sample(pd, x[start : start + chunk], y[start : start + chunk])
                for a, n in zip(acc, names):
                    a += gs[n].square().sum(0, dtype=torch.float64)
                del gs
                if tick is not None:
                    tick()
            return acc
        except (KeyboardInterrupt, MemoryError):
            raise
        except Exception:  # no batching rule for some op: the per-sample loop below
            pass
    out = [torch.zeros_like(p, dtype=torch.float64) for p in params]
    for s in range(size(x)):
        xs, ys = take(x, 1, s), None if y is None else y[s : s + 1]
        for acc, g in zip(out, _grads(adapter, model, names, params, xs, ys)[0]):
            acc += g * g
        if tick is not None and s % 16 == 15:
            tick()
    return out


def _estimate(bench, rows, ratios, data, second_order, granularity, criterion, t0, progress=None) -> SensitivityResult:
    """Predicted loss change per point from gradients (and squared gradients) of one pass over `data`.
    `progress` counts batches (a callback may raise to stop: nothing on the model is changed)."""
    model, adapter = bench.model, bench.adapter
    names = sorted({n for r in rows for n in r.ranking.masks(float(ratios.max()))})
    params = [model.get_parameter(n) for n in names]
    grads = [torch.zeros_like(p, dtype=torch.float64) for p in params]
    fisher = [torch.zeros_like(p, dtype=torch.float64) for p in params] if second_order else None
    n = 0
    try:
        total = len(data)
    except TypeError:
        total = 0
    bar = _bar(progress, total, f"sensitivity estimate ({granularity}/{criterion})")
    done = [0]
    tick = (lambda: progress(done[0], total)) if callable(progress) else None
    with eval_mode(model), torch.enable_grad():
        for x, y in adapter.batches(data, model):
            gs, count = _grads(adapter, model, names, params, x, y)  # autograd.grad: no .grad written on the model
            for acc, g in zip(grads, gs):
                acc += g
            if fisher is not None:  # diagonal empirical Fisher from per-sample gradients
                for acc, g2 in zip(fisher, _squared_sample_grads(adapter, model, names, params, x, y, tick)):
                    acc += g2
            n += count  # loss terms: samples, or tokens for language models
            done[0] += 1
            bar(1)
    bar(0, close=True)
    if n == 0:
        raise DataError("sensitivity estimate: the data yielded no samples")
    index = {name: i for i, name in enumerate(names)}
    values = np.zeros((len(rows), len(ratios)))
    with torch.no_grad():
        for i, row in enumerate(rows):
            for j, r in enumerate(ratios):
                total = 0.0
                for name, mask in row.ranking.masks(float(r)).items():
                    k = index[name]
                    w = params[k].double()
                    cur = bench.store.current(name)
                    new = mask if cur is None else mask & ~cur
                    total += float((-grads[k] / n * w)[new].sum())  # L(w with w_i=0) - L(w) ≈ -g·w
                    if fisher is not None:
                        total += float((0.5 * fisher[k] / n * w * w)[new].sum())
                values[i, j] = total
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
    )
