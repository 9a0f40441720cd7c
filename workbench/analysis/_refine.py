"""Refine mode: the estimate first, then exact loss changes cell by cell, the cells that matter first.

The map starts as the sensitivity estimate (with the trust check's sampled cells already measured) and each step
replaces one cell with its exact loss change. Order of expected impact: the cells at or next to each row's
current ratio (the ratios the user is choosing between, from `around` or the bench's current state), then all
other cells by the magnitude of their predicted change. Cells of one row that come close together in that order
are measured in one batched pass (`PointEvaluator.points`) and handed out one by one. Run to the end, the map is
the exact scan's (``metric="loss"``); stopped early, it is exact where `exact` says and estimated elsewhere.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from ..evaluate import eval_mode

__all__ = ["current_ratios", "refine_order", "refine_steps"]

NEAR = 1  # grid steps from a row's current ratio that count as "near"
LOOKAHEAD = 16  # cells ahead in the order searched for more cells of the same row to batch


def current_ratios(bench, rows, around: Any) -> np.ndarray | None:
    """Per row, the ratio the user is at: from `around` (a `Plan`, or ``{layer: ratio}``), else the bench's
    current state (the resolved per-layer plans of the applied steps); NaN for rows it does not name, None if
    nothing names any row."""
    table: dict[str, float] = {}
    if around is None:
        if getattr(bench.store, "position", 0):
            for name, lp in bench.current.layers.items():
                r = lp.get("ratio") if isinstance(lp, Mapping) else getattr(lp, "ratio", None)
                if r is not None:
                    table[name] = float(r)
    elif isinstance(around, Mapping):
        table = {k: float(v) for k, v in around.items()}
    else:  # a Plan: its own entry for a layer, else its default
        layers, default = getattr(around, "layers", {}), getattr(around, "default", None)
        for row in rows:
            for m in row.members:
                lp = layers.get(m) or default
                if lp is not None:
                    table[m] = float(lp.ratio)
    out = np.array([max((table[m] for m in r.members if m in table), default=math.nan) for r in rows])
    return None if np.isnan(out).all() else out


def refine_order(values: np.ndarray, exact: np.ndarray, ratios: np.ndarray, cur: np.ndarray | None) -> list:
    """Cells not yet exact, most important first: at most `NEAR` grid steps from the row's current ratio, then
    by the magnitude of the predicted change (larger first); ties by position."""
    cells = []
    for i in range(values.shape[0]):
        near = None
        if cur is not None and not math.isnan(cur[i]):
            near = int(np.argmin(np.abs(ratios - cur[i])))
        for j in range(values.shape[1]):
            if exact[i, j]:
                continue
            far = 0 if near is not None and abs(j - near) <= NEAR else 1
            cells.append((far, -abs(float(values[i, j])), i, j))
    cells.sort()
    return [(i, j) for _, _, i, j in cells]


def refine_steps(
    bench,
    rows,
    ratios: np.ndarray,
    data,
    second_order: bool,
    granularity: str,
    criterion: str,
    t0: float,
    progress,
    engine: str,
    *,
    trust_cells: int = 8,
    around: Any = None,
    budget: float | None = None,
    time_limit: float | None = None,
    stop: Callable[[], bool] | None = None,
) -> Iterator:
    """Yields the map (a `SensitivityResult`, mode ``"refine"``) after the estimate and after each exact cell."""
    from .sensitivity import _bar, _estimate_and_checks, _result, scale_ratio, trust_figure

    values, checks, ev = _estimate_and_checks(
        bench, rows, ratios, data, second_order, granularity, criterion, progress, trust_cells, engine
    )
    estimated = values.copy()
    exact = np.zeros(values.shape, dtype=bool)
    trust = trust_figure([c[2] for c in checks], [c[3] for c in checks]) if checks else None
    scale = scale_ratio([c[2] for c in checks], [c[3] for c in checks]) if checks else None
    label = "first-order Taylor" + (" + diagonal Fisher" if second_order else "")
    total = values.size
    limit = total if budget is None else min(total, math.ceil(budget * total - 1e-9))
    bar = _bar(progress, total, f"sensitivity refine ({granularity}/{criterion})")
    with eval_mode(bench.model):
        if ev is None:
            from ._points import PointEvaluator

            ev = PointEvaluator(bench, rows, ratios, data, "loss", engine)
        for i, j, _, x in checks:
            values[i, j], exact[i, j] = x, True
        bar(int(exact.sum()))

        def result(done: bool):
            return _result(
                rows, ratios, values, ev.baseline, "loss", False, granularity, criterion, "refine", t0, done,
                f"estimate ({label}) refined by {ev.engine}",
                exact=exact.copy(), trust=trust, checks=tuple(checks), scale=scale,
            )  # fmt: skip

        try:
            yield result(bool(exact.all()))
            order = refine_order(estimated, exact, ratios, current_ratios(bench, rows, around))
            start = time.perf_counter()
            while order and int(exact.sum()) < limit:
                if stop is not None and stop():
                    break
                if time_limit is not None and time.perf_counter() - start >= time_limit:
                    break
                i, j = order.pop(0)
                room = limit - int(exact.sum())
                same = [c for c in order[:LOOKAHEAD] if c[0] == i][: max(0, room - 1)]
                js = [j] + [c[1] for c in same]
                js = ev.chunks(i, js)[0]  # within the memory bound of one batched pass
                for c in [(i, jj) for jj in js[1:]]:
                    order.remove(c)
                for jj, v in zip(js, ev.points(i, js)):
                    values[i, jj], exact[i, jj] = v, True
                    bar(1)
                    yield result(bool(exact.all()))
        finally:
            bar(0, close=True)
