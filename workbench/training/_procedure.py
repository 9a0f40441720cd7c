"""What every training procedure does around its own body: snapshot, seed, progress, stop, record."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import torch

from .._interrupt import deferred_interrupt
from ..errors import WorkbenchWarning
from ..masks.select import select
from ..plan import LayerPlan, Plan
from ._loop import Curves, Progress, TrainingResult, pool, result, seeded
from ._state import MaskView, named_state, record, snapshot

__all__ = ["final_plan", "plan_at", "prune_step", "run_procedure"]


def run_procedure(
    state,
    kind: str,
    label: str,
    body: Callable[[MaskView, Curves, Progress, dict[str, Any]], None],
    *,
    data: Iterable | None,
    seed: int | None,
    progress: Any,
    total_steps: int,
    plan: Plan | None = None,
    info: dict[str, Any] | None = None,
) -> TrainingResult:
    """Run `body(view, curves, progress, info)` on the live model and record it as one history step.

    A KeyboardInterrupt stops the body: the masks are enforced, the state reached is recorded (the label says
    "stopped") and the result has ``stopped=True``. Any other error puts every tensor back as it was (bitwise)
    and re-raises; nothing is recorded.
    """
    with state.store.transaction():  # one state change: no other thread moves the model meanwhile
        return _run(state, kind, label, body, data, seed, progress, total_steps, plan, info)


def _run(state, kind, label, body, data, seed, progress, total_steps, plan, info) -> TrainingResult:
    t0 = time.perf_counter()
    seed = state.seed if seed is None else seed
    before = snapshot(state.model)
    view = MaskView(state.model, state.store)
    curves = Curves()
    info = dict(info or {})
    info.setdefault("seed", seed)
    bar = Progress(progress, total_steps, kind)
    stopped = False
    try:
        with seeded(seed, *([data] if data is not None else [])):
            body(view, curves, bar, info)
    except KeyboardInterrupt:
        stopped = True
    except BaseException:
        _restore(state.model, before)
        raise
    finally:
        bar.close()
    if stopped:
        label += f" stopped at epoch {curves.done:.2f}"
        warnings.warn(
            f"{kind} stopped after {curves.done:.2f} epochs; the state reached is recorded as one history step "
            "(undo returns to the state before it)",
            WorkbenchWarning,
            stacklevel=3,
        )
    if plan is None and isinstance(info.get("plan"), Plan):  # a plan the procedure learned (learned masks)
        plan = info["plan"]
    try:
        with torch.random.fork_rng(devices=[]):  # evaluating a DataLoader draws a seed from the global RNG
            entry = record(state, before, view, label=label, kind=kind, plan=plan)
    except BaseException:  # nothing was recorded (the store rolled back its part): the state before training
        _restore(state.model, before)
        raise
    metric_name = (entry.metrics or {}).get("metric_name", str(getattr(state.metric, "__name__", state.metric)))
    return result(kind, label, curves, metric_name, entry.index, stopped, t0, info)


def _restore(model, before) -> None:
    """Every parameter and buffer back to `before` (a `snapshot`), bitwise, with Ctrl-C held back."""
    live = named_state(model)
    with deferred_interrupt(), torch.no_grad():
        for k, v in before.items():
            live[k].detach().copy_(v)


def final_plan(plan: Plan | None, final: float | None, criterion: str) -> Plan:
    """The plan a schedule ends at: `plan` as given, or a global `criterion` plan at sparsity `final`."""
    if plan is not None:
        return plan
    return Plan.global_(final, criterion=criterion)  # type: ignore[arg-type]


def plan_at(plan: Plan, ratio_of: Callable[[float], float]) -> Plan:
    """`plan` with every ratio r replaced by ``ratio_of(r)`` (an intermediate step of a schedule)."""
    layers = {k: LayerPlan(ratio_of(v.ratio), v.granularity, v.criterion) for k, v in plan.layers.items()}
    d = plan.default
    default = None if d is None else LayerPlan(ratio_of(d.ratio), d.granularity, d.criterion)
    return Plan(layers, default, plan.scope, plan.include, plan.exclude)


def prune_step(state, view: MaskView, plan: Plan) -> int:
    """Select `plan` on the live model (counting the view's masks as pruned) and zero it; returns how many new."""
    sel = select(state.model, state.targets, state.groups, plan, view, seed=state.seed, data=state.calib)
    return view.add_(sel.masks)


def sparsity_of(state, view: MaskView) -> Callable[[], float]:
    names = pool(state)
    return lambda: view.sparsity(names)
