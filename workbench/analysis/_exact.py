"""Exact sensitivity scans: every (row, ratio) point measured, on a thread pool (`PointEvaluator`: the fx suffix,
replay or full engine) or on a Dask cluster (`workbench.analysis.distributed`), interruptible with Ctrl-C (the
partial map comes back, NaN where not computed)."""

from __future__ import annotations

import math
import warnings
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np
import torch

from ..evaluate import eval_mode, higher_is_better
from ._points import PointEvaluator

__all__: list[str] = []


def _exact(bench, rows, ratios, data, metric, granularity, criterion, executor, progress, engine, t0):
    from .sensitivity import AnalysisError, _bar, _result

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
        every = list(range(len(ratios)))
        own = executor is None
        pool = ThreadPoolExecutor(max_workers=max(1, min(4, torch.get_num_threads()))) if own else executor
        bar = _bar(progress, len(rows) * len(ratios), f"sensitivity ({granularity}/{criterion})")
        futures = {}
        complete = True
        try:
            first = []
            if ev.batched is None:  # auto: whether to batch ratios is timed on the first row, before the others go out
                first = ev.chunks(0, every, timing=True)[0]
                for j, v in zip(first, ev.points(0, first)):
                    values[0, j] = v
                    bar(1)
            jobs = [(i, js) for i in range(len(rows)) for js in ev.chunks(i, [j for j in every if i or j not in first])]
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


def _dask_points(bench, client, rows, ratios, jobs, data, metric, baseline, progress, values):
    """Run the points on a Dask cluster (`workbench.analysis.distributed`); returns (values, complete)."""
    from distributed import as_completed

    from .distributed import scatter, submit_points
    from .sensitivity import AnalysisError, _bar

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
