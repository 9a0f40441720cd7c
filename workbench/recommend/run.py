"""`recommend`: measure every strategy, fine-tune the most promising, compile, time and rank; `apply_row`."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import torch

from ..errors import GranularityError, PlanError, WorkbenchWarning
from ..plan import Plan
from ..state import as_state
from .candidates import FINETUNE_STRATEGIES, STRATEGIES, _check
from .context import _Cand, _Ctx
from .measure import _compile, _time
from .rank import _key, _reasons, _row
from .result import Recommendation, Row, _budget_text, _is_accuracy
from .search import _finetune, _plan_fn, _potential, _search


def recommend(
    bench,
    goal: str = "latency",
    budget: float | None = None,
    device: str = "cpu",
    *,
    strategies: Iterable[str] | None = None,
    finetune: int = 0,
    batch_size: int = 64,
    repeats: int = 7,
    timer: str = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> Recommendation:
    """Rank pruning strategies for `bench`'s model by `goal` within `budget`, measured here; see the module
    docstring for goals, budgets and strategies. The live model is never written to: pruned variants are structural
    clones, compiled and fine-tuned ones are copies.

    `finetune`: epochs of fine-tuning measured for the two most promising strategies (0: one-shot only).
    `batch_size`, `repeats`: the batch the speed is measured at and the interleaved rounds. `timer`: on CPU,
    ``"cpu"`` times process CPU time on one thread (other programs on a shared machine do not distort it),
    ``"wall"`` wall-clock time with torch's threads (`workbench.sparse.timing.measure`); CUDA is always wall-clock.
    `progress(done, total)` is called as strategies finish."""
    budget, names = _check(goal, budget, device, strategies, finetune, timer)
    t0 = time.perf_counter()
    notes: list[str] = []
    speed = device == "cpu" or torch.cuda.is_available()
    dev = torch.device(device if speed else "cpu")
    if not speed:
        notes.append(
            "CUDA speed cannot be measured here: torch sees no CUDA device. The ranking uses the metric measured on "
            "this machine and, for latency, the share of FLOPs a CUDA kernel can skip: structured removal (shrink) "
            "everywhere, and 2:4 semi-structured (the CUDA-accelerated pattern: NVIDIA Ampere or newer, fp16/bf16, "
            "Linear layers with multiples of 32 x 64 features) half of the eligible layers' multiplies. Measure on "
            "the GPU with wb.sparse.compile(bench, backend='auto', device='cuda') before relying on it."
        )
    state = as_state(bench)
    ctx = _Ctx(state, goal, budget, dev if speed else torch.device("cuda"), batch_size)
    if device == "cuda":
        share = sum(ctx.cuda_24.values()) / max(ctx.flops, 1.0)
        notes.append(
            f"{len(ctx.cuda_24)} Linear layer(s) of this model fit the 2:4 kernels' shapes: {share:.0%} of its FLOPs"
        )
    total = len(names) + (FINETUNE_STRATEGIES if finetune else 0) + 1
    cands: list[_Cand] = []
    plans: dict[str, Callable[[float], Plan]] = {}
    skipped: dict[str, str] = {}
    for k, name in enumerate(names):
        s = STRATEGIES[name]
        try:
            plans[name], gran = _plan_fn(ctx, s)
            c = _search(ctx, s, plans[name], gran)
            if c is None:
                raise PlanError(f"no ratio of {s.label} can be applied to this model")
            cands.append(c)
        except (PlanError, GranularityError) as e:
            skipped[name] = str(e).split("; ")[0]
        if progress is not None:
            progress(k + 1, total)
    if finetune and cands and state.train is None:
        notes.append("fine-tuning was not measured: the bench has no training data (Workbench(..., train=...))")
    elif finetune and cands:
        for k, c in enumerate(
            sorted(cands, key=_potential(goal, ctx.device, budget, ctx.higher))[:FINETUNE_STRATEGIES]
        ):
            tuned = _finetune(ctx, c, plans[c.strategy.name], finetune)
            if ctx.goal in ("latency", "size"):  # keep the highest ratio within budget, else the closest
                ok = [t for t in tuned if ctx.drop(t.value) <= budget + 1e-12]
                tuned = ok[-1:] or sorted(tuned, key=lambda t: ctx.drop(t.value))[:1]
            cands += tuned
            if progress is not None:
                progress(len(names) + k + 1, total)
    for c in cands:
        _compile(ctx, c, dev)
    if speed:
        _time(ctx, cands, dev, repeats, timer)
    if progress is not None:
        progress(total, total)
    rows = sorted((_row(ctx, c, speed) for c in cands), key=_key(goal, speed))
    where = "CUDA" if dev.type == "cuda" else "CPU"
    rows = _reasons(rows, ctx, speed, where)
    met = any(r.meets_budget for r in rows)
    text = _budget_text(goal, budget, ctx.metric_name)
    if rows and not met:
        b = rows[0]
        if goal in ("latency", "size"):
            by = f"{100 * b.shortfall:.1f} points" if _is_accuracy(ctx.metric_name) else f"{b.shortfall:.4f}"
        else:
            by = f"{b.shortfall:.2f}x (it reaches {b.size_ratio:.2f}x)"
        msg = f"no strategy meets the budget ({text}); the closest is {b.strategy} ({b.timing}), missing it by {by}"
        notes.insert(0, msg)
        warnings.warn(msg, WorkbenchWarning, stacklevel=2)
    if skipped:
        notes.append("not applicable here: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    return Recommendation(
        goal=goal,
        budget=budget,
        budget_text=text,
        device=device,
        measured_on=where if speed else None,
        metric_name=ctx.metric_name,
        metric_now=ctx.metric_now,
        robust_now=ctx.robust_now,
        params=ctx.params,
        bytes_now=ctx.bytes_now,
        rows=tuple(rows),
        met=met,
        notes=tuple(notes),
        skipped=skipped,
        seconds=time.perf_counter() - t0,
        model=state.name,
    )


def apply_row(bench, row: Row, *, progress: Any = False):
    """Apply a recommended row to the live model of `bench` (a Workbench or its `State`): ``bench.apply(row.plan)``,
    then fine-tune `row.finetune_epochs` epochs if the row was measured with fine-tuning (the same seed). Returns the
    last history entry."""
    from ..training.finetune import finetune

    state = as_state(bench)
    entry = state.apply(row.plan, label=f"recommended: {row.strategy} {row.ratio:.0%}")
    if row.finetune_epochs:
        finetune(state, row.finetune_epochs, progress=progress, seed=state.seed)
        entry = state.current
    return entry
