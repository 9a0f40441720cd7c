"""The state an analysis, a training procedure, `compile`, `compare`, `recommend` or `monitor` reads from a bench.

A `State` is plain data: the live model and what the workbench knows about it (its adapter, targets, coupled
groups, mask store, data, metric, seed, example inputs) and its `log`, the bench's `History`. `Workbench.state` builds
one; `as_state` is the one answer to "is this a bench?" for functions that take either. A State is not a copy: its
`model` is the live model, its `store` the bench's mask store and its `log` the bench's history, so steps recorded
through it (`apply`, `record`, `log.trial()`) are the bench's steps.

>>> import torch, workbench as wb
>>> bench = wb.Workbench(torch.nn.Linear(4, 2), [(torch.randn(8, 4), torch.randint(0, 2, (8,)))])
>>> state = as_state(bench)
>>> state.model is bench.model, state.store is bench.store, as_state(state) is state
(True, True, True)
>>> state.apply(wb.Plan.uniform(0.5)).index, bench.current.index
(1, 1)
>>> as_state(42)                                           # doctest: +ELLIPSIS
Traceback (most recent call last):
workbench.errors.NotABenchError: expected a Workbench or a workbench.State, got int...
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from torch import Tensor, nn

from .errors import DataError, NotABenchError
from .evaluate import MetricLike, evaluate

if TYPE_CHECKING:
    from .adapter import Adapter
    from .groups import GroupAnalysis
    from .history import History, HistoryEntry
    from .masks.select import Selection
    from .plan import Plan
    from .targets import Targets

__all__ = ["FixedMasks", "MaskSource", "State", "as_state"]


class MaskSource(Protocol):
    """Where a state's current masks come from: a `MaskStore`, or `FixedMasks` for a model that is not live."""

    def masks(self) -> dict[str, Tensor]: ...


@dataclass(frozen=True)
class FixedMasks:
    """A mask source for a model outside any bench (a clone with `masks` applied): no history, nothing to undo.

    >>> import torch
    >>> FixedMasks({"weight": torch.zeros(2, dtype=torch.bool)}).position
    0
    """

    fixed: Mapping[str, Tensor]
    position: int = 0

    def masks(self) -> dict[str, Tensor]:
        return dict(self.fixed)


@dataclass(frozen=True, eq=False)  # identity: its fields are live objects (a module, data loaders)
class State:
    """What code working on a bench reads: the live `model`, its `adapter`, `targets`, coupled `groups`, the mask
    `store` (a `MaskStore`, or any `MaskSource`), evaluation `data`, `calib`ration and `train`ing batches, the
    `metric`, the `seed`, the `example_inputs`, the bench's `name` and its `log` (the bench's `History`, set by
    `Workbench.state`; None for a state without a bench). `history` and `current` read the log's entries (a single
    dense entry when there is none); `apply` and `record` add a step to it."""

    model: nn.Module
    adapter: Adapter | None
    targets: Targets
    groups: GroupAnalysis | None
    store: Any  # a MaskStore, or a MaskSource for a model that is not live
    data: Iterable | None = None
    calib: Iterable | None = None
    train: Iterable | None = None
    metric: MetricLike = "accuracy"
    seed: int = 0
    example_inputs: Any = None
    name: str = ""
    log: History | None = field(default=None, repr=False)

    def evaluate(self, data: Iterable | None = None, metric: MetricLike | None = None) -> dict[str, Any]:
        """Evaluate the model as it is now: ``{"metric", "accuracy", "loss", "per_class", ...}`` (holding the store's
        lock, so no other thread changes the model meanwhile)."""
        data = self.data if data is None else data
        if data is None:
            raise DataError("this Workbench has no evaluation data; pass it as Workbench(model, data) or here")
        lock = getattr(self.store, "lock", None)
        with lock if lock is not None else contextlib.nullcontext():
            return evaluate(self.model, data, self.metric if metric is None else metric, adapter=self.adapter)

    def preview(self, plan: Plan) -> Selection:
        """The masks `plan` would apply on top of the current ones (a `Selection`); the model is not changed."""
        from .masks import select

        return select(
            self.model,
            self.targets,
            self.groups,
            plan,
            self.store,
            seed=self.seed,
            data=self.calib,
            adapter=self.adapter,
        )

    def apply(self, plan: Plan, *, label: str | None = None, evaluate: bool = True) -> HistoryEntry:
        """Prune in place as `plan` says (`preview`) and record the step in the bench's history: `Workbench.apply`."""
        return self.require_log(f"the plan {plan!r}").apply(self, plan, label=label, evaluate=evaluate)

    def record(
        self,
        masks: Mapping[str, Tensor],
        *,
        label: str,
        plan: Any = None,
        kind: str = "prune",
        weights: Any = None,
        evaluate: bool = True,
        before: Mapping[str, Tensor] | None = None,
        started: float | None = None,
    ) -> HistoryEntry:
        """Record `masks` (True = pruned, by full parameter name), with a training step's weight swap, as one step
        of the owning bench's history: `Workbench.apply_masks`, whose arguments these are."""
        return self.require_log(f"the step {label!r}").record(
            self, dict(masks), label=label, plan=plan, kind=kind, weights=weights, evaluate=evaluate,
            before=None if before is None else dict(before), started=started,
        )  # fmt: skip

    def require_log(self, what: str = "a step") -> History:
        """The bench's `History` that `what` is recorded in; a `NotABenchError` for a state without one."""
        if self.log is None:
            raise NotABenchError(
                f"this State has no bench whose history could record {what}: it was not made by "
                "Workbench.state. Pass the Workbench (or its .state) to record steps."
            )
        return self.log

    @property
    def history(self) -> tuple[HistoryEntry, ...]:
        """The owning bench's history (entry 0 = dense); a lone dense entry for a state without a bench."""
        if self.log is not None:
            return self.log.entries
        from .history import HistoryEntry

        return (HistoryEntry(0, "dense", None, {}, None, 0.0, 0, 0.0, True),)

    @property
    def current(self) -> HistoryEntry:
        """The history entry of the current state."""
        return self.history[getattr(self.store, "position", 0)]


def as_state(
    obj: Any, *, error: type[Exception] = NotABenchError, what: str = "expected a Workbench or a workbench.State"
) -> State:
    """The `State` of `obj`: a Workbench's ``.state``, a State itself. Anything else raises `error` (by default
    `NotABenchError`, a `TypeError`): `what` the caller takes, the type it got and what to pass instead."""
    if isinstance(obj, State):
        return obj
    from .bench import Workbench

    if isinstance(obj, Workbench):
        return obj.state
    hint = (
        " (attach a plain module first: wb.Workbench(model, data))"
        if isinstance(obj, nn.Module)
        else " (a bench is made with wb.Workbench(model, data))"
    )
    raise error(f"{what}, got {type(obj).__name__}{hint}")
