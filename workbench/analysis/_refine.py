"""Refine mode: the estimate first, then exact loss changes cell by cell, the cells that matter first.

The map starts as the sensitivity estimate (with the trust check's sampled cells already measured) and each step
measures one more cell's exact loss change. Order: the cells at or next to each row's current ratio (the ratios the
user is choosing between, from `around` or the bench's current state) first; then the ratio axis is bisected row by
row: every row's largest ratio (rows with the larger predicted change first), then every row's middle ratio, then
the quarter points, and so on. Cells of one row that come close together in that order are measured in one batched
pass (`PointEvaluator.points`) and handed out one by one.

The cells not measured yet are predicted from the measured ones (`fill_map`) in one of two ways, because models
differ in what their estimate gets right:

- `log_linear`, for trained models near a minimum of their loss: there the loss changes of pruning one layer are
  positive and grow roughly geometrically with the ratio, while first-order estimates are often tens of times too
  small and rank low ratios by noise. A row's exact cells are interpolated log-linearly in the ratio, a change at or
  below the noise level (the largest negative change measured) counting as that level, and extended below its first
  exact cell by the median log-slope of the rows with two or more, above its last by that slope or its own last
  segment's, whichever is flatter (one segment's slope is noisy, and the curves level off at large ratios); a row
  with one exact cell takes the median slope; a row with none keeps the estimate, scaled to the exact cells (least
  squares). Extrapolated changes are capped at ten times the largest one measured.
- `corrected`, for models away from a minimum (random or freshly initialised weights, fine-tuning from a new head):
  there the changes are small and of either sign, a first-order estimate predicts them closely, and a geometric
  fill has nothing to hold on to. The estimate is kept and, per row, corrected near the row's exact cells by its
  error there (fading over `REACH` grid steps: the error of a first-order estimate grows with the ratio, but one
  cell's error is partly noise that should not move the whole row).

Both start from the estimate with changes too small to move the measured loss set to 0, and predict 0 there too
(`zero_level`: half the smallest step of the loss; a random-weight ConvNeXt leaves six of its nine rows unchanged to
the last bit while their estimate reads 1e-11 to 1e-9, which ranked those cells at random). Changes of a few steps
are kept: measured, they read as multiples of a step, still ranked as the estimate ranks them.

`fill_choice` picks between them on the measured cells themselves: each of up to `HELD_OUT` exact cells is left out
in turn and predicted from the others both ways; the prediction that ranks those cells closer to their places among
the other measured values fills the map, and the result says which (`SensitivityResult.fill`). After 20% of the
cells it picks the log-linear fill on the trained demo models (but for head pruning of the demo transformer) and the
corrected estimate on every random-weight model of the test zoo, where a geometric fill alone ranked the map at 0.2
on average, below the estimate it started from (`benchmarks/sensitivity.py --zoo`). Run to the end, the map is the
exact scan's (``metric="loss"``); stopped early, it is exact where `exact` says and predicted elsewhere (`estimate`
keeps the raw estimate).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from ..evaluate import eval_mode
from ._estimate import resolution

__all__ = [
    "corrected",
    "current_ratios",
    "fill_choice",
    "fill_map",
    "filled",
    "log_linear",
    "refine_order",
    "refine_steps",
    "zero_level",
]

NEAR = 1  # grid steps from a row's current ratio that count as "near"
LOOKAHEAD = 16  # cells ahead in the order searched for more cells of the same row to batch
HELD_OUT = 24  # exact cells left out in turn to choose between the two predictions of the others
REACH = 3  # grid steps over which an exact cell corrects the estimate of its row's other cells


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


def bisection(n: int) -> list[int]:
    """Column order that bisects `n` ratios: the largest, the middle, the quarter points, ... then the rest.

    >>> bisection(9)
    [8, 4, 2, 6, 1, 3, 5, 7, 0]
    """
    order, seen = [n - 1], {n - 1}
    parts = [(-1, n - 1)]  # open intervals (lo, hi) of columns still to split; -1 stands for ratio 0
    while parts:
        nxt = []
        for lo, hi in parts:
            mid = (lo + hi + 1) // 2
            if lo < mid < hi and mid not in seen:
                order.append(mid)
                seen.add(mid)
                nxt += [(lo, mid), (mid, hi)]
        parts = nxt
    return order + [j for j in range(n) if j not in seen]


def refine_order(values: np.ndarray, exact: np.ndarray, ratios: np.ndarray, cur: np.ndarray | None) -> list:
    """Cells not yet exact, most important first: those at most `NEAR` grid steps from the row's current ratio
    (nearest first), then the ratio axis bisected for every row in turn (`bisection`), rows with the larger
    predicted change at the largest ratio first; ties by position."""
    cells = []
    rank = {j: k for k, j in enumerate(bisection(values.shape[1]))}
    for i in range(values.shape[0]):
        near = None
        if cur is not None and not math.isnan(cur[i]):
            near = int(np.argmin(np.abs(ratios - cur[i])))
        for j in range(values.shape[1]):
            if exact[i, j]:
                continue
            if near is not None and abs(j - near) <= NEAR:
                cells.append((0, abs(j - near), 0.0, i, j))
            else:
                cells.append((1, rank[j], -abs(float(values[i, -1])), i, j))
    cells.sort()
    return [(i, j) for *_, i, j in cells]


def fill_map(estimate: np.ndarray, values: np.ndarray, exact: np.ndarray, zero: float = 0.0) -> np.ndarray:
    """`values` where `exact`, elsewhere the better of two predictions from the exact cells (see the module
    docstring): `log_linear` or `corrected`, whichever places exact cells left out in turn closer to their ranks
    (`fill_choice`). `zero` (`zero_level`): estimated and predicted changes within it of 0 are 0 (too small to move
    the measured loss: random-weight models leave whole rows unchanged to the last bit while their estimate reads
    1e-11).

    Rows that grow geometrically, an estimate that grows linearly: the log-linear fill recovers them.

    >>> exact = np.array([[1, 0, 1, 0, 1], [1, 1, 0, 0, 1]], dtype=bool)
    >>> est = np.array([[1.0, 2, 3, 4, 5], [1, 2, 3, 4, 5]]) / 100
    >>> truth = np.array([[1.0, 2, 4, 8, 16], [1, 3, 9, 27, 81]]) / 100
    >>> fill_choice(est, truth, exact), fill_map(est, np.where(exact, truth, np.nan), exact).round(3).tolist()
    ('log-linear', [[0.01, 0.02, 0.04, 0.08, 0.16], [0.01, 0.03, 0.09, 0.27, 0.81]])

    Changes of either sign that the estimate predicts to within 10%: the corrected estimate.

    >>> est = np.array([[0.1, -0.2, 0.3, -0.4, 0.5], [-0.1, 0.2, 0.1, 0.3, -0.2]])
    >>> fill_choice(est, 1.1 * est, exact), fill_map(est, 1.1 * est, exact).round(3).tolist()
    ('corrected', [[0.11, -0.18, 0.33, -0.36, 0.55], [-0.11, 0.22, 0.103, 0.293, -0.22]])

    Below `zero`, predictions are 0:

    >>> exact = np.array([[True, False, False]])
    >>> fill_map(np.array([[1e-11, -2e-11, 3e-7]]), np.array([[0.0, 0, 0]]), exact, zero=3e-8).tolist()
    [[0.0, 0.0, 3e-07]]
    """
    return filled(estimate, values, exact, zero)[1]


def filled(estimate: np.ndarray, values: np.ndarray, exact: np.ndarray, zero: float = 0.0):
    """(`fill_choice`, `fill_map`) at once."""
    estimate = _zeroed(estimate, zero)
    name = fill_choice(estimate, values, exact)
    out = FILLS[name](estimate, values, exact)
    return name, np.where(exact, out, _zeroed(out, zero))


def zero_level(model, baseline: float, n_batches: int) -> float:
    """Half the smallest step in which the measured loss moves: each batch's loss is summed in the model's float type
    and the sums averaged over the batches, so the mean moves in steps of about one float step (ulp) of the baseline
    divided by the number of batches (`_estimate.resolution` is two ulps). A change below it leaves the measured loss
    unchanged.

    >>> import torch
    >>> f"{zero_level(torch.nn.Linear(2, 2), 1.1, 4):.2g}"
    '1.5e-08'
    """
    return resolution(model, baseline) / (4 * max(1, n_batches))


def _zeroed(a: np.ndarray, zero: float) -> np.ndarray:
    """`a` with values within `zero` of 0 set to 0."""
    return np.where(np.abs(a) <= zero, 0.0, a) if zero > 0 else a


def fill_choice(estimate: np.ndarray, values: np.ndarray, exact: np.ndarray, zero: float = 0.0) -> str:
    """``"log-linear"`` or ``"corrected"``: the prediction that places held-out exact cells closer to where they
    belong among the measured values. Each of up to `HELD_OUT` exact cells (spread over them) is left out in turn and
    predicted from the others both ways; a prediction's error is how far its rank among the other measured values is
    from the measured value's rank (what a heatmap read for "which layer, which ratio" depends on: a prediction of
    the right shape at the wrong scale misplaces the cell among the exact ones). The corrected estimate on a tie and
    while fewer than four cells are exact (too few to judge). `zero`: as in `fill_map`."""
    estimate = _zeroed(estimate, zero)
    cells = np.argwhere(exact)
    if len(cells) < 4:
        return "corrected"
    cells = cells[np.linspace(0, len(cells) - 1, min(HELD_OUT, len(cells))).round().astype(int)]
    errors = dict.fromkeys(FILLS, 0.0)
    for i, j in cells:
        without = exact.copy()
        without[i, j] = False
        others = np.sort(values[without])
        where = np.searchsorted(others, values[i, j])
        for name, fill in FILLS.items():
            guess = fill(estimate, values, without, rows=[i])[0, j]
            errors[name] += abs(int(np.searchsorted(others, guess)) - int(where))
    return "log-linear" if errors["log-linear"] < errors["corrected"] else "corrected"


def corrected(estimate: np.ndarray, values: np.ndarray, exact: np.ndarray, rows=None) -> np.ndarray:
    """The estimate plus, per row, its error at the row's exact cells carried to the cells within `REACH` grid steps
    (weights falling linearly with the distance; an average where several exact cells reach a cell); farther cells
    and rows without an exact cell keep the estimate. Returns the rows `rows` (default all), exact cells replaced
    by `values`.

    >>> est = np.array([[1.0, 2.0, 3.0, 4.0, 5.0], [-1.0, -2.0, -3.0, -4.0, -5.0]])
    >>> got = np.array([[0.0, 0.0, 0.0, 0.0, 8.0], [0.0] * 5])
    >>> corrected(est, got, np.array([[False] * 4 + [True], [False] * 5])).round(3).tolist()
    [[1.0, 2.0, 4.0, 6.0, 8.0], [-1.0, -2.0, -3.0, -4.0, -5.0]]
    """
    rows = range(estimate.shape[0]) if rows is None else rows
    cols = np.arange(estimate.shape[1])
    out = np.empty((len(rows), estimate.shape[1]))
    for k, i in enumerate(rows):
        js = np.flatnonzero(exact[i])
        out[k] = estimate[i]
        if len(js):
            reach = np.maximum(0.0, 1.0 - np.abs(cols[:, None] - js[None, :]) / REACH)  # column x exact cell
            out[k] += reach @ (values[i, js] - estimate[i, js]) / np.maximum(1.0, reach.sum(1))
            out[k, js] = values[i, js]
    return out


def log_linear(estimate: np.ndarray, values: np.ndarray, exact: np.ndarray, rows=None) -> np.ndarray:
    """Each row's exact cells interpolated log-linearly along the row (see the module docstring); returns the rows
    `rows` (default all), exact cells kept.

    >>> est = np.array([[0.1, 0.2, 0.3], [0.1, 0.2, 0.3]])
    >>> got = np.array([[0.0, 0.4, 1.6], [0.0, 0.0, 0.8]])
    >>> log_linear(est, got, np.array([[False, True, True], [False, False, True]])).round(3).tolist()
    [[0.1, 0.4, 1.6], [0.05, 0.2, 0.8]]
    """
    rows = range(estimate.shape[0]) if rows is None else rows
    if not exact.any():
        return estimate[list(rows)].copy()
    measured = values[exact]
    neg = -measured[measured < 0]
    floor = max(float(neg.max()) if neg.size else 0.0, 1e-6 * float(np.abs(measured).max()), 1e-30)
    logv = np.log(np.maximum(np.where(exact, values, floor), floor))  # changes at or below the noise level: floor
    n = exact.shape[1]
    count = exact.sum(1)
    first, last = exact.argmax(1), n - 1 - exact[:, ::-1].argmax(1)
    two = np.flatnonzero(count >= 2)
    slopes = (logv[two, last[two]] - logv[two, first[two]]) / (last[two] - first[two])
    slope = float(np.median(slopes)) if len(two) else None
    cap = math.log(10 * max(float(np.abs(measured).max()), floor))  # extrapolations stay finite
    e = estimate[exact]
    scale = float(e @ measured / (e @ e)) if float(e @ e) > 0 else 1.0
    cols = np.arange(n)
    out = np.empty((len(rows), n))
    for k, i in enumerate(rows):
        js = np.flatnonzero(exact[i])
        todo = ~exact[i]
        out[k] = np.where(exact[i], values[i], 0.0)
        if len(js) >= 2:  # log-linear between the exact cells; beyond them, the pooled slope (see below)
            lo = np.clip(np.searchsorted(js, cols) - 1, 0, len(js) - 2)
            a, b = js[lo], js[lo + 1]
            row = logv[i, a] + (logv[i, b] - logv[i, a]) * (cols - a) / (b - a)
            # a row's end segment is one noisy local slope: below its first exact cell the median slope of all rows
            # extends it; above its last, that slope or the row's own, whichever is flatter (curves saturate)
            own = (logv[i, js[-1]] - logv[i, js[-2]]) / (js[-1] - js[-2])
            left, right = cols < js[0], cols > js[-1]
            row[left] = logv[i, js[0]] + slope * (cols[left] - js[0])
            row[right] = logv[i, js[-1]] + min(own, slope) * (cols[right] - js[-1])
            out[k, todo] = np.exp(np.minimum(row[todo], cap))
        elif len(js) == 1 and slope is not None:
            out[k, todo] = np.exp(np.minimum(logv[i, js[0]] + slope * (cols[todo] - js[0]), cap))
        else:  # no exact cell in this row (or no slope anywhere yet): the estimate, scaled to the exact cells
            out[k, todo] = scale * estimate[i, todo]
    return out


FILLS = {"log-linear": log_linear, "corrected": corrected}


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
    from .sensitivity import _bar, _estimate_and_checks, _result, _trust

    values, checks, ev = _estimate_and_checks(
        bench, rows, ratios, data, second_order, granularity, criterion, progress, trust_cells, engine
    )
    estimated = values.copy()
    exact = np.zeros(values.shape, dtype=bool)
    trust, scale = _trust(bench, checks, ev)
    label = "first-order Taylor" + (" + diagonal Fisher" if second_order else "")
    total = values.size
    limit = total if budget is None else min(total, math.ceil(budget * total - 1e-9))
    bar = _bar(progress, total, f"sensitivity refine ({granularity}/{criterion})")
    with eval_mode(bench.model):
        if ev is None:
            from ._points import PointEvaluator

            ev = PointEvaluator(bench, rows, ratios, data, "loss", engine)
        # data without a length: as if one batch (the larger step)
        zero = zero_level(bench.model, ev.baseline, len(data) if hasattr(data, "__len__") else 1)
        for i, j, _, x in checks:
            values[i, j], exact[i, j] = x, True
        bar(int(exact.sum()))

        def result(done: bool):
            fill, predicted = filled(estimated, values, exact, zero)
            return _result(
                rows, ratios, predicted, ev.baseline, "loss", False,
                granularity, criterion, "refine", t0, done, f"estimate ({label}) refined by {ev.engine}",
                exact=exact.copy(), trust=trust, checks=tuple(checks), scale=scale, estimate=estimated.copy(),
                fill=fill,
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
