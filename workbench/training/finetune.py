"""Fine-tuning a pruned model in place: masks enforced every step, optional knowledge distillation, one history step.

>>> import torch, workbench as wb
>>> torch.manual_seed(0) and None
>>> model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
>>> data = [(torch.randn(32, 8), torch.randint(0, 3, (32,)))]
>>> bench = wb.Workbench(model, data, train=data)
>>> _ = bench.apply(wb.Plan.global_(0.8))
>>> r = bench.finetune(epochs=2, lr=1e-2, teacher="before", progress=False)
>>> r.kind, len(r.loss), bench.history[-1].kind, round(float(r.sparsity[-1]), 2)
('finetune', 2, 'finetune', 0.8)
>>> _ = bench.undo(); bench.history[-1].active   # exact undo of the training, then of the pruning
False
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

from torch import nn

from ..errors import DataError
from ..evaluate import eval_mode
from ..state import as_state
from ._loop import TrainingError, TrainingResult, check, train_epochs
from ._procedure import run_procedure, sparsity_of
from ._state import frozen_clone, state_at

__all__ = ["finetune", "resolve_teacher", "training_data"]


def training_data(state, data: Iterable | None) -> Iterable:
    """`data`, else the bench's `train` loader; a DataError says how to pass one."""
    data = data if data is not None else getattr(state, "train", None)
    if data is None:
        raise DataError(
            "training needs training data: pass train= when creating the Workbench "
            "(wb.Workbench(model, data, train=train_loader)) or data= to this call"
        )
    if hasattr(data, "train") and hasattr(data, "val"):  # a DemoData bundle
        data = data.train
    return data


def last_pruning_step(state) -> int:
    """History index of the last applied step that pruned (`apply` or a pruning procedure; fine-tune steps are
    skipped); 0 if none."""
    for i in range(state.store.position, 0, -1):
        if state.store.steps[i - 1].info.get("kind", "prune") not in ("finetune",):
            return i
    return 0


def resolve_teacher(state, teacher: Any) -> tuple[nn.Module | None, str | None]:
    """(teacher module, description) for ``None``, ``"before"``, a history index or an `nn.Module`.

    History states become a frozen structural clone whose tensors are that state's values, computed from the
    store's undo data: the live model is not copied, moved or changed (one copy of its tensors is made).
    """
    if teacher is None:
        return None, None
    if isinstance(teacher, nn.Module):
        if teacher is state.model:
            raise TrainingError(
                "the teacher is the live model itself; pass teacher='before' (the state before the last pruning "
                "step), a history index, or another model"
            )
        return teacher, type(teacher).__name__
    if isinstance(teacher, str):
        if teacher != "before":
            raise TrainingError(f"teacher must be None, 'before', a history index or an nn.Module, got {teacher!r}")
        i = last_pruning_step(state)
        if i == 0:
            raise TrainingError(
                "teacher='before' means the state before the last pruning step, but no pruning step is applied; "
                "apply a plan first or pass a history index / a model as teacher"
            )
        index = i - 1
    elif isinstance(teacher, int) and not isinstance(teacher, bool):
        n = len(state.store.steps)
        index = teacher + n + 1 if teacher < 0 else teacher
        if not 0 <= index <= n:
            raise TrainingError(
                f"teacher history index {teacher} does not exist: this bench has entries 0..{n} (see bench.history)"
            )
    else:
        raise TrainingError(f"teacher must be None, 'before', a history index or an nn.Module, got {teacher!r}")
    return frozen_clone(state.model, state_at(state, index)), f"entry {index}"


def finetune(
    state,
    epochs: int = 3,
    *,
    lr: float = 1e-3,
    optimizer: Any = "adamw",
    weight_decay: float = 0.0,
    schedule: str = "cosine",
    teacher: Any = None,
    T: float = 4.0,
    alpha: float = 0.5,
    data: Iterable | None = None,
    seed: int | None = None,
    progress: Any = True,
    label: str | None = None,
) -> TrainingResult:
    """Train the bench's live model for `epochs` epochs with its pruning masks enforced after every optimizer step
    (pruned weights and their gradients are zeroed, so they stay exactly zero), then record one history step.

    Args:
        epochs: full passes over `data` (default: the bench's `train` loader).
        lr, optimizer, weight_decay, schedule: ``"adamw"`` (default), ``"adam"``, ``"sgd"`` (momentum 0.9), an
            Optimizer class or a callable ``params -> optimizer``; ``schedule="cosine"`` (default, to 0 over the
            run) or ``"constant"``.
        teacher: knowledge distillation (Hinton et al. 2015) from ``"before"`` (the state before the last pruning
            step), a history index, or any `nn.Module` with the same outputs; the loss is
            ``alpha * T^2 * KL(teacher || student at temperature T) + (1 - alpha) * CE``. History states are
            rebuilt as a frozen structural clone from the store's undo data (one copy of the tensors, no deepcopy
            of the live model).
        seed: makes the run reproducible (default: the bench's seed); the caller's RNG state is left alone.
        progress: a tqdm bar (True), a callback ``fn(done, total)`` that may raise KeyboardInterrupt to stop, or
            False.

    History: the step has ``kind="finetune"``, no new masks, and a swap of every tensor training changed, so
    undo returns to the state before fine-tuning bit for bit (and then undoes the pruning exactly), redo returns
    to the trained state. Stopping (Ctrl-C, or a progress callback raising KeyboardInterrupt) records the state
    reached (label ends in "stopped") and returns with ``stopped=True``.

    Returns a `TrainingResult`: training loss, evaluation metric and loss, learning rate and sparsity per epoch
    (and loss/lr per step) for plotting.
    """
    state = as_state(state)
    epochs = check(epochs, "epochs", lo=1, lo_open=False, integer=True)
    check(lr, "lr")
    check(T, "temperature T")
    check(alpha, "alpha", lo=0.0, hi=1.0, lo_open=False)
    data = training_data(state, data)
    t_model, t_desc = resolve_teacher(state, teacher)
    opt_name = optimizer if isinstance(optimizer, str) else getattr(optimizer, "__name__", "custom")
    kd = f", KD from {t_desc}, T={T:g}, alpha={alpha:g}" if t_desc else ""
    text = label or f"finetune {epochs} ep ({opt_name}, lr {lr:g}{kd})"

    def body(view, curves, bar, info) -> None:
        with eval_mode(t_model) if t_model is not None else contextlib.nullcontext():
            train_epochs(
                state,
                view,
                data,
                epochs,
                curves=curves,
                progress=bar,
                lr=lr,
                optimizer=optimizer,
                weight_decay=weight_decay,
                schedule=schedule,
                teacher=t_model,
                T=T,
                alpha=alpha,
                sparsity_of=sparsity_of(state, view),
            )

    info = {"epochs": epochs, "lr": lr, "optimizer": opt_name, "schedule": schedule, "teacher": t_desc}
    info.update({"T": T, "alpha": alpha} if t_desc else {})
    steps = len(data) * epochs if hasattr(data, "__len__") else 0
    return run_procedure(
        state, "finetune", text, body, data=data, seed=seed, progress=progress, total_steps=steps, info=info
    )
