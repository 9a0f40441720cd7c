"""The training loop every procedure shares: masks enforced every step, optional distillation, curves, progress.

Deterministic with a seed: the global RNG is forked and seeded for the procedure (the caller's state is left as it
was), and a loader that shuffles with its own `torch.Generator` is re-seeded for the procedure and given its old
state back afterwards. Each module's train/eval flag and each parameter's `.grad` are restored at the end.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..adapter import IGNORE, logits_of
from ..errors import DataError, ModelError, WorkbenchError
from ..masks.select import DEFAULT_KINDS
from ._state import MaskView

__all__ = ["Curves", "Progress", "TrainingError", "TrainingResult", "pool", "seeded", "train_epochs"]

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("cosine", "constant")


class TrainingError(WorkbenchError, ValueError):
    """A training procedure got an argument it cannot use (epochs, lr, alpha, teacher, schedule, ...)."""


def check(value: Any, name: str, *, lo: float = 0.0, hi: float = math.inf, lo_open=True, integer=False) -> Any:
    """`value` if it is a number in the range, else a TrainingError naming it."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and integer:
        ok = float(value).is_integer()
    if ok:
        ok = (value > lo if lo_open else value >= lo) and value <= hi
    if not ok:
        lo_s = f"({lo:g}" if lo_open else f"[{lo:g}"
        raise TrainingError(
            f"{name} must be {'an integer' if integer else 'a number'} in {lo_s}, {hi:g}], got {value!r}"
        )
    return int(value) if integer else value


def pool(state) -> list[str]:
    """Full names of the prunable weights a default plan covers (linear, conv, LSTM, attention; not tied)."""
    return [p for t in state.targets if t.kind in DEFAULT_KINDS and not t.tied_to for p in t.param_names()]


@dataclass
class Curves:
    """Per epoch (x = epochs done, fractional when stopped mid-epoch) and per step, filled while training."""

    epoch: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    metric: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    sparsity: list[float] = field(default_factory=list)
    step_loss: list[float] = field(default_factory=list)
    step_lr: list[float] = field(default_factory=list)
    done: float = 0.0  # epochs trained so far (all rounds)


@dataclass(frozen=True)
class TrainingResult:
    """What a training procedure did: curves per epoch for plotting, and the history entry it recorded.

    `epoch[i]` is the number of epochs trained (over all rounds) when `loss[i]` (mean training loss of that
    epoch), `metric[i]`/`val_loss[i]` (evaluation data) and `lr[i]` (at the epoch's end) were taken; `sparsity`
    is over the weights a default plan prunes (linear, conv, LSTM, attention). `step_*` are per optimizer step.
    `entry` is the history index of the recorded step; `stopped` says it was interrupted (the state reached is
    recorded); `info` holds procedure details (rounds, schedule) as plain data.
    """

    kind: str
    label: str
    epoch: np.ndarray
    loss: np.ndarray
    metric: np.ndarray
    val_loss: np.ndarray
    lr: np.ndarray
    sparsity: np.ndarray
    step_loss: np.ndarray
    step_lr: np.ndarray
    metric_name: str
    entry: int
    stopped: bool
    seconds: float
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def final_metric(self) -> float:
        return float(self.metric[-1]) if len(self.metric) else math.nan

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in self.__dict__.items():
            out[k] = v.tolist() if isinstance(v, np.ndarray) else v
        return out

    def to_pandas(self):
        """One row per epoch: epoch, loss, metric, val_loss, lr, sparsity."""
        import pandas as pd

        cols = ("epoch", "loss", "metric", "val_loss", "lr", "sparsity")
        return pd.DataFrame({c: getattr(self, c) for c in cols})

    def __repr__(self) -> str:
        last = f"{self.metric_name} {self.final_metric:.4f}" if len(self.metric) else "no evaluation"
        stop = ", stopped" if self.stopped else ""
        return f"TrainingResult({self.label}: {len(self.epoch)} epochs, {last}, entry {self.entry}{stop})"


def result(kind, label, curves: Curves, metric_name, entry, stopped, t0, info=None) -> TrainingResult:
    a = lambda v: np.asarray(v, dtype=np.float64)  # noqa: E731
    return TrainingResult(
        kind=kind,
        label=label,
        epoch=a(curves.epoch),
        loss=a(curves.loss),
        metric=a(curves.metric),
        val_loss=a(curves.val_loss),
        lr=a(curves.lr),
        sparsity=a(curves.sparsity),
        step_loss=a(curves.step_loss),
        step_lr=a(curves.step_lr),
        metric_name=metric_name,
        entry=entry,
        stopped=stopped,
        seconds=time.perf_counter() - t0,
        info=dict(info or {}),
    )


class Progress:
    """A progress bar over optimizer steps: tqdm (``True``), a callback ``fn(done, total)`` (which may raise
    KeyboardInterrupt to stop, like the dashboard's Stop button), or nothing (``False``/``None``)."""

    def __init__(self, progress: Any, total: int, desc: str):
        self.fn = progress if callable(progress) else None
        self.done = 0
        self.total = total
        self.bar = None
        if progress is True:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, leave=False)

    def step(self, **postfix: float) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
            if postfix and self.done % 10 == 0:
                self.bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)
        if self.fn is not None:
            self.fn(self.done, self.total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@contextlib.contextmanager
def seeded(seed: int, *loaders: Iterable) -> Iterator[None]:
    """Fork and seed the global RNG; re-seed loaders' own shuffling generators; restore all afterwards."""
    gens = []
    for loader in loaders:
        g = getattr(getattr(loader, "sampler", None), "generator", None) or getattr(loader, "generator", None)
        if isinstance(g, torch.Generator) and all(g is not h for h, _ in gens):
            gens.append((g, g.get_state()))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for i, (g, _) in enumerate(gens):
            g.manual_seed(seed * 7919 + i)
        try:
            yield
        finally:
            for g, state in gens:
                g.set_state(state)


@contextlib.contextmanager
def training_mode(model: nn.Module) -> Iterator[None]:
    """Train mode and fresh `.grad`s inside; each module's flag and each parameter's old `.grad` restored after."""
    flags = [(m, m.training) for m in model.modules()]
    grads = [(p, p.grad) for p in model.parameters()]
    for p in model.parameters():
        p.grad = None
    model.train()
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag
        for p, g in grads:
            p.grad = g


def make_optimizer(optimizer: Any, params: list[Tensor], lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """``"adamw"`` (default), ``"adam"``, ``"sgd"`` (momentum 0.9, Nesterov), an Optimizer class, or a callable
    ``params -> Optimizer``."""
    if isinstance(optimizer, str):
        name = optimizer.lower()
        if name == "adamw":
            return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
        if name == "adam":
            return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
        if name == "sgd":
            return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
        raise TrainingError(
            f"optimizer must be one of {OPTIMIZERS}, a torch.optim.Optimizer class or a callable params -> "
            f"optimizer; got {optimizer!r}"
        )
    if isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer):
        return optimizer(params, lr=lr)
    if callable(optimizer):
        opt = optimizer(params)
        if not isinstance(opt, torch.optim.Optimizer):
            raise TrainingError(f"the optimizer callable must return a torch.optim.Optimizer, got {type(opt).__name__}")
        return opt
    raise TrainingError(
        f"optimizer must be a name in {OPTIMIZERS}, an Optimizer class or a callable, got {optimizer!r}"
    )


def kd_loss(student: Tensor, teacher: Tensor, y: Tensor, T: float, alpha: float) -> Tensor:
    """Hinton et al. 2015: ``alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, y)``.

    >>> s = torch.tensor([[2.0, 0.0]]); y = torch.tensor([0])
    >>> bool(torch.isclose(kd_loss(s, s, y, 4.0, 1.0), torch.tensor(0.0)))  # a student equal to its teacher
    True
    """
    kl = F.kl_div(
        F.log_softmax(student / T, -1), F.log_softmax(teacher / T, -1), log_target=True, reduction="batchmean"
    )
    ce = F.cross_entropy(student, y) if alpha < 1 else student.new_zeros(())
    return alpha * T * T * kl + (1 - alpha) * ce


def _distill(adapter, out: Any, t_out: Any, x: Any, y: Any, T: float, alpha: float) -> Tensor:
    """The distillation loss of one batch for a classification or token task (per counted sample or token)."""
    task = adapter.task_for(out, x, y)
    if task.name == "regression":
        raise TrainingError("distillation needs class or token logits; pass teacher=None for a regression model")
    target = adapter.target(task, x, y)
    s, t = task.pairs(logits_of(out), target)
    z, _ = task.pairs(logits_of(t_out), target)
    if z.shape != s.shape:
        raise ModelError(
            f"the teacher outputs shape {tuple(z.shape)} but the model outputs {tuple(s.shape)} for the same batch; "
            "distillation needs the same outputs (the same classes). Pass a teacher for this task, or teacher=None"
        )
    keep = t != IGNORE
    return kd_loss(s[keep].float(), z[keep].float(), t[keep], T, alpha)


def train_epochs(
    state,
    view: MaskView,
    data: Iterable,
    epochs: int,
    *,
    curves: Curves,
    progress: Progress,
    lr: float,
    optimizer: Any = "adamw",
    weight_decay: float = 0.0,
    schedule: str = "cosine",
    teacher: nn.Module | None = None,
    T: float = 4.0,
    alpha: float = 0.5,
    on_step: Callable[[int], None] | None = None,
    on_epoch: Callable[[int], None] | None = None,
    sparsity_of: Callable[[], float] | None = None,
    extra_loss: Callable[[], Tensor] | None = None,
    forward: Callable[[Any], Any] | None = None,
    evaluate_in: Callable[[], contextlib.AbstractContextManager] | None = None,
) -> None:
    """Train `bench.model` for `epochs` epochs on `data` with `view`'s masks enforced after every step.

    A fresh optimizer and learning-rate schedule per call (each round of a procedure restarts them); `extra_loss()`
    is added to every step's loss (and so to the logged loss). `forward(x)` replaces the model call in training
    steps (e.g. learned masks run the model with gated weights); the per-epoch evaluation runs inside
    `evaluate_in()` when given (e.g. with the current mask applied). Appends to
    `curves`; a KeyboardInterrupt (Ctrl-C, or a progress callback) propagates after the partial epoch is logged,
    with the masks enforced, so the caller can record a consistent state.
    """
    model, adapter = state.model, state.adapter
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise TrainingError("the model has no parameter that requires grad; nothing to train")
    opt = make_optimizer(optimizer, params, lr, weight_decay)
    steps_per_epoch = len(data) if hasattr(data, "__len__") else None
    total = None if steps_per_epoch is None else max(1, epochs * steps_per_epoch)
    if schedule == "cosine" and total is not None:
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    elif schedule in SCHEDULES:
        sched = None
    else:
        raise TrainingError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    step = 0
    with training_mode(model):
        for epoch in range(epochs):
            losses, n_steps = [], 0
            try:
                for x, y in adapter.batches(data, model):
                    opt.zero_grad(set_to_none=True)
                    out = adapter.call(x, model) if forward is None else forward(x)
                    if teacher is not None:
                        with torch.no_grad():
                            t_out = adapter.call(x, teacher)
                        loss = _distill(adapter, out, t_out, x, y, T, alpha)
                    else:
                        loss = adapter.mean_loss(out, x, y)
                    if extra_loss is not None:  # e.g. ADMM's rho/2 ||W - Z + U||^2
                        loss = loss + extra_loss()
                    if not torch.isfinite(loss):
                        raise TrainingError(
                            f"the training loss became {float(loss)} at epoch {epoch + 1}, step {n_steps + 1}; "
                            f"lower the learning rate (lr={lr:g})"
                        )
                    loss.backward()
                    view.enforce_(grads=True)  # pruned weights get no update (and no momentum)
                    opt.step()
                    if sched is not None:
                        sched.step()
                    view.enforce_(grads=False)  # decoupled weight decay and friends cannot revive them
                    step += 1
                    n_steps += 1
                    value = float(loss.detach())
                    losses.append(value)
                    curves.step_loss.append(value)
                    curves.step_lr.append(float(opt.param_groups[0]["lr"]))
                    if on_step is not None:
                        on_step(step)
                    progress.step(loss=value)
            except KeyboardInterrupt:
                view.enforce_(grads=False)
                if n_steps:
                    with evaluate_in() if evaluate_in is not None else contextlib.nullcontext():
                        fraction = n_steps / max(steps_per_epoch or n_steps, 1)
                        _log_epoch(state, curves, losses, opt, fraction, sparsity_of)
                raise
            if n_steps == 0:
                raise DataError("the training data yielded no batches; pass a non-empty DataLoader of (inputs, labels)")
            with evaluate_in() if evaluate_in is not None else contextlib.nullcontext():
                _log_epoch(state, curves, losses, opt, 1.0, sparsity_of)
            if on_epoch is not None:
                on_epoch(epoch + 1)


def _log_epoch(state, curves: Curves, losses, opt, fraction: float, sparsity_of) -> None:
    curves.done += fraction
    curves.epoch.append(round(curves.done, 6))
    curves.loss.append(float(np.mean(losses)) if losses else math.nan)
    curves.lr.append(float(opt.param_groups[0]["lr"]))
    if state.data is not None:
        m = state.evaluate()
        curves.metric.append(float(m["metric"]))
        curves.val_loss.append(float(m["loss"]))
    else:
        curves.metric.append(math.nan)
        curves.val_loss.append(math.nan)
    curves.sparsity.append(sparsity_of() if sparsity_of is not None else math.nan)
