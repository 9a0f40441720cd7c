"""Pruning schedules while training: gradual (AGP), iterative prune/fine-tune rounds, lottery tickets.

Each call trains the live model with its masks enforced after every optimizer step, prunes on its schedule with
any plan (default: global magnitude, the criterion of all three papers; `plan=` gives a final plan of any
granularity/criterion whose ratios are scaled along the schedule), and records **one** history step that undo
reverses bitwise. ``info["events"]`` lists every pruning event (training step, epoch, ratio, metric).

>>> import torch, workbench as wb
>>> torch.manual_seed(0) and None
>>> model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))
>>> data = [(torch.randn(16, 8), torch.randint(0, 3, (16,))) for _ in range(4)]
>>> bench = wb.Workbench(model, data, train=data)
>>> r = wb.training.gradual(bench, ratio=0.8, steps=4, epochs=2, progress=False)
>>> [round(e["ratio"], 3) for e in r.info["events"]], round(float(r.sparsity[-1]), 2)
([0.463, 0.7, 0.788, 0.8], 0.8)
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from .._deprecate import renamed
from ..plan import Plan
from ..state import as_state
from ._loop import Curves, Progress, TrainingError, TrainingResult, check, train_epochs
from ._procedure import final_plan, plan_at, prune_step, run_procedure, sparsity_of
from ._state import MaskView, named_state, snapshot
from .finetune import training_data

__all__ = ["agp_sparsity", "gradual", "iterative", "lottery", "round_sparsity"]

TRAIN_KEYS = ("lr", "optimizer", "weight_decay", "schedule")


def agp_sparsity(t: float, *, initial: float, final: float, start: float, n: int, dt: float) -> float:
    """Zhu & Gupta 2017: ``s_f + (s_i - s_f) * (1 - (t - t0) / (n dt))^3``, held at s_i before t0 and s_f after.

    >>> [round(agp_sparsity(t, initial=0.0, final=0.9, start=0, n=4, dt=1), 4) for t in range(6)]
    [0.0, 0.5203, 0.7875, 0.8859, 0.9, 0.9]
    """
    frac = min(max((t - start) / (n * dt), 0.0), 1.0)
    return final + (initial - final) * (1.0 - frac) ** 3


def round_sparsity(r: int, rounds: int, final: float, kind: str = "geometric") -> float:
    """Sparsity after round `r` of `rounds`: geometric (each round removes the same share of what is left, as in
    the lottery-ticket papers) or linear.

    >>> [round(round_sparsity(r, 3, 0.875), 3) for r in (1, 2, 3)], round_sparsity(1, 2, 0.8, "linear")
    ([0.5, 0.75, 0.875], 0.4)
    """
    if kind == "geometric":
        return 1.0 - (1.0 - final) ** (r / rounds)
    if kind == "linear":
        return final * r / rounds
    raise TrainingError(f"round schedule must be 'geometric' or 'linear', got {kind!r}")


def _train_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    unknown = set(kwargs) - set(TRAIN_KEYS)
    if unknown:
        raise TrainingError(
            f"unknown training options {sorted(unknown)}; these procedures take {', '.join(TRAIN_KEYS)}"
        )
    out = {"lr": 1e-3, **kwargs}
    check(out["lr"], "lr")
    return out


def _scaled(plan: Plan, ref: float, s: float) -> Plan:
    """`plan` at point `s` of a schedule whose final ratio is `ref`: every ratio r becomes ``r * s / ref``."""
    if s >= ref:
        return plan
    return plan_at(plan, lambda r: 0.0 if ref <= 0 else r * s / ref)


def _reference(plan: Plan) -> float:
    """The ratio a schedule is expressed in: the default's, else the largest explicit one."""
    if plan.default is not None:
        return plan.default.ratio
    return max((lp.ratio for lp in plan.layers.values()), default=0.0)


def _metric(state) -> float:
    return float(state.evaluate()["metric"]) if state.data is not None else math.nan


@renamed(final="ratio")
def gradual(
    state,
    ratio: float = 0.9,
    steps: int = 10,
    epochs: int = 5,
    *,
    initial: float = 0.0,
    end: float = 0.75,
    plan: Plan | None = None,
    criterion: str = "magnitude",
    data: Iterable | None = None,
    seed: int | None = None,
    progress: Any = True,
    **train: Any,
) -> TrainingResult:
    """Gradual magnitude pruning with the AGP cubic schedule (Zhu & Gupta 2017) while training for `epochs`.

    Training runs ``T = epochs * len(data)`` optimizer steps; the sparsity is raised `steps` times, every
    ``dt = end * T / steps`` steps, along ``s_f + (s_i - s_f) (1 - t / (steps * dt))^3`` (fast at first, slowly
    near the end), so `ratio` is reached at fraction `end` of training and the rest recovers. Masks only grow
    (what one event prunes stays pruned). `train` takes ``lr`` (1e-3), ``optimizer``, ``weight_decay``,
    ``schedule`` (see `finetune`).
    """
    state = as_state(state)
    target = final_plan(plan, ratio, criterion)
    ref = _reference(target)
    steps = check(steps, "steps", lo=1, lo_open=False, integer=True)
    epochs = check(epochs, "epochs", lo=1, lo_open=False, integer=True)
    check(end, "end", lo=0.0, hi=1.0)
    check(initial, "initial", lo=0.0, hi=ref, lo_open=False)
    kw = _train_kwargs(train)
    data = training_data(state, data)
    total = len(data) * epochs
    dt = end * total / steps
    events = {max(1, round(k * dt)): k for k in range(1, steps + 1)}  # optimizer step -> event number
    prune_step(state, MaskView(state.model, state.store), plan_at(target, lambda r: 0.0))  # bad plans fail now

    def body(view: MaskView, curves: Curves, bar: Progress, info: dict[str, Any]) -> None:
        def ratio_at(k: int) -> float:
            return agp_sparsity(k * dt, initial=initial, final=ref, start=0.0, n=steps, dt=dt)

        def at_step(step: int) -> None:
            k = events.get(step)
            if k is None:
                return
            s = ratio_at(k)
            new = prune_step(state, view, _scaled(target, ref, s))
            info["events"].append({"step": step, "epoch": step / len(data), "ratio": s, "new": new})

        info["events"] = []
        if initial > 0:
            new = prune_step(state, view, _scaled(target, ref, initial))
            info["events"].append({"step": 0, "epoch": 0.0, "ratio": initial, "new": new})
        train_epochs(
            state,
            view,
            data,
            epochs,
            curves=curves,
            progress=bar,
            on_step=at_step,
            sparsity_of=sparsity_of(state, view),
            **kw,
        )

    label = f"gradual (AGP) to {ref:g} in {steps} steps over {epochs} ep"
    info = {"final": ref, "steps": steps, "epochs": epochs, "end": end, "initial": initial, **kw}
    return run_procedure(
        state,
        "gradual",
        label,
        body,
        data=data,
        seed=seed,
        progress=progress,
        total_steps=total,
        plan=target,
        info=info,
    )


@renamed(final="ratio")
def iterative(
    state,
    ratio: float = 0.9,
    rounds: int = 4,
    finetune_epochs: int = 1,
    *,
    plan: Plan | None = None,
    criterion: str = "magnitude",
    schedule_rounds: str = "geometric",
    data: Iterable | None = None,
    seed: int | None = None,
    progress: Any = True,
    **train: Any,
) -> TrainingResult:
    """`rounds` rounds of prune-then-fine-tune up to `ratio` (Han et al. 2015); ``rounds=1`` is one-shot pruning
    followed by fine-tuning, so both spend ``rounds * finetune_epochs`` epochs when compared at equal epochs.

    Round r prunes to ``1 - (1 - ratio)^(r / rounds)`` (geometric: the same share of what is left each round;
    ``schedule_rounds="linear"`` for ``ratio * r / rounds``), then fine-tunes `finetune_epochs` epochs with the
    masks enforced. ``info["events"]`` has the metric right after each prune and after its fine-tune.
    """
    state = as_state(state)
    target = final_plan(plan, ratio, criterion)
    ref = _reference(target)
    rounds = check(rounds, "rounds", lo=1, lo_open=False, integer=True)
    finetune_epochs = check(finetune_epochs, "finetune_epochs", lo=0, lo_open=False, integer=True)
    round_sparsity(1, rounds, ref, schedule_rounds)
    kw = _train_kwargs(train)
    data = training_data(state, data) if finetune_epochs else data
    total = (len(data) * finetune_epochs * rounds) if data is not None and hasattr(data, "__len__") else 0
    prune_step(state, MaskView(state.model, state.store), plan_at(target, lambda r: 0.0))

    def body(view: MaskView, curves: Curves, bar: Progress, info: dict[str, Any]) -> None:
        info["events"] = []
        for r in range(1, rounds + 1):
            s = round_sparsity(r, rounds, ref, schedule_rounds)
            new = prune_step(state, view, _scaled(target, ref, s))
            event = {"round": r, "epoch": curves.done, "ratio": s, "new": new, "pruned_metric": _metric(state)}
            info["events"].append(event)
            if finetune_epochs:
                train_epochs(
                    state,
                    view,
                    data,
                    finetune_epochs,
                    curves=curves,
                    progress=bar,
                    sparsity_of=sparsity_of(state, view),
                    **kw,
                )
                event["metric"] = curves.metric[-1] if curves.metric else math.nan

    label = f"iterative to {ref:g} in {rounds} rounds x {finetune_epochs} ep"
    if rounds == 1:
        label = f"one-shot to {ref:g} + {finetune_epochs} ep fine-tune"
    info = {
        "final": ref,
        "rounds": rounds,
        "finetune_epochs": finetune_epochs,
        "schedule_rounds": schedule_rounds,
        **kw,
    }
    return run_procedure(
        state,
        "iterative",
        label,
        body,
        data=data,
        seed=seed,
        progress=progress,
        total_steps=total,
        plan=target,
        info=info,
    )


@renamed(final="ratio")
def lottery(
    state,
    ratio: float = 0.9,
    rounds: int = 3,
    rewind_epoch: int = 1,
    epochs: int = 3,
    *,
    plan: Plan | None = None,
    criterion: str = "magnitude",
    data: Iterable | None = None,
    seed: int | None = None,
    progress: Any = True,
    **train: Any,
) -> TrainingResult:
    """Lottery ticket (Frankle & Carbin 2019) with rewinding (Frankle et al. 2020).

    Train `epochs` epochs from the current state, keeping the weights after epoch `rewind_epoch` (k = 0: the
    starting weights, the original ticket). Then `rounds` times: prune to the round's sparsity (geometric, up
    to `ratio`) by magnitude, reset the surviving weights (and BatchNorm statistics) to their epoch-k values,
    and train ``epochs - k`` epochs (a fresh optimizer and schedule: rewinding restarts them). Total:
    ``epochs + rounds * (epochs - k)`` epochs. Meant to start from an untrained model.
    """
    state = as_state(state)
    target = final_plan(plan, ratio, criterion)
    ref = _reference(target)
    rounds = check(rounds, "rounds", lo=1, lo_open=False, integer=True)
    epochs = check(epochs, "epochs", lo=1, lo_open=False, integer=True)
    rewind_epoch = check(rewind_epoch, "rewind_epoch", lo=0, hi=epochs - 1, lo_open=False, integer=True)
    kw = _train_kwargs(train)
    data = training_data(state, data)
    total = len(data) * (epochs + rounds * (epochs - rewind_epoch))
    prune_step(state, MaskView(state.model, state.store), plan_at(target, lambda r: 0.0))

    def body(view: MaskView, curves: Curves, bar: Progress, info: dict[str, Any]) -> None:
        saved: dict[str, Any] = {}
        if rewind_epoch == 0:
            saved.update(snapshot(state.model))

        def keep(epoch: int) -> None:
            if epoch == rewind_epoch:
                saved.update(snapshot(state.model))

        sp = sparsity_of(state, view)
        train_epochs(state, view, data, epochs, curves=curves, progress=bar, on_epoch=keep, sparsity_of=sp, **kw)
        info["events"] = [{"round": 0, "epoch": curves.done, "ratio": sp(), "metric": curves.metric[-1]}]
        for r in range(1, rounds + 1):
            s = round_sparsity(r, rounds, ref)
            new = prune_step(state, view, _scaled(target, ref, s))
            live = named_state(state.model)
            with torch.no_grad():
                for k, v in saved.items():
                    live[k].detach().copy_(v)
            view.enforce_(grads=False)  # rewound, with this round's masks
            event = {"round": r, "epoch": curves.done, "ratio": s, "new": new, "rewound_metric": _metric(state)}
            info["events"].append(event)
            train_epochs(state, view, data, epochs - rewind_epoch, curves=curves, progress=bar, sparsity_of=sp, **kw)
            event["metric"] = curves.metric[-1]

    label = f"lottery to {ref:g} in {rounds} rounds, rewind to epoch {rewind_epoch} of {epochs}"
    info = {"final": ref, "rounds": rounds, "rewind_epoch": rewind_epoch, "epochs": epochs, **kw}
    return run_procedure(
        state,
        "lottery",
        label,
        body,
        data=data,
        seed=seed,
        progress=progress,
        total_steps=total,
        plan=target,
        info=info,
    )
