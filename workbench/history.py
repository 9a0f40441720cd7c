"""A bench's history: its mask store's steps and one `HistoryEntry` per step, kept in step by public transactions.

A `History` is what a `State` made by `Workbench.state` records into, so code that takes a State (compare, training,
`prune_llm`, `recommend.apply_row`) adds steps, tries and comes back without the Workbench. Each transaction holds the
store's lock and leaves the steps and the entries matching, also on an error or Ctrl-C:

- `record` (and `apply`: a plan's masks, then `record`) applies one step and adds its entry, or neither;
- `trial` tries steps and comes back: the model (bitwise), the entries and the bench's last results as before;
- `truncate` drops the steps that could be redone, with their entries;
- `adopt` / `force_reset` take the model as it is now as the new entry 0.

Entry 0 is the state the bench started from (dense, unless the model arrived with zeros); its metrics are evaluated
once, when first needed (`dense_metrics`). The history also keeps the bench's last results (`last_sensitivity`,
`last_allocation`, `last_llm`): a trial puts the first two back, a new starting point clears them.

>>> import torch, workbench as wb
>>> bench = wb.Workbench(torch.nn.Linear(4, 2), [(torch.randn(8, 4), torch.randint(0, 2, (8,)))])
>>> state = bench.state
>>> with state.log.trial():
...     _ = state.apply(wb.Plan.uniform(0.5), evaluate=False)
...     len(state.history)
2
>>> len(bench.history), state.apply(wb.Plan.uniform(0.5)).index, bench.current.index
(1, 1, 1)
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ._interrupt import deferred_interrupt, settle

if TYPE_CHECKING:
    from .masks import MaskStore
    from .state import State
    from .targets import Targets

__all__ = ["SPARSE_START", "History", "HistoryEntry", "zeros_share"]

SPARSE_START = 0.05  # a share of exactly-zero target weights that no trained dense model has by chance


@dataclass(frozen=True)
class HistoryEntry:
    """One state of the model: entry 0 is dense, entry i the state after step i.

    `plan` is the applied plan as a dict, `layers` the resolved per-target plans, `metrics` the
    evaluation right after the step (None if not evaluated), `sparsity` over all targets, `active`
    whether the state is at or before the current position (False: undone, can be redone).
    `kind` is ``"prune"`` for `apply`, else the training procedure that made the step (``"finetune"``,
    ``"gradual"``, ``"iterative"``, ``"lottery"``, ``"admm"``, ``"synflow"``; see `workbench.training`): such steps also
    change unpruned weights, and undo/redo restore those bitwise too.
    """

    index: int
    label: str
    plan: dict[str, Any] | None
    layers: dict[str, dict[str, Any]]
    metrics: dict[str, Any] | None
    sparsity: float
    removed: int
    seconds: float
    active: bool
    kind: str = "prune"

    @property
    def metric(self) -> float | None:
        return None if self.metrics is None else self.metrics["metric"]


class History:
    """The steps of `store` and one entry per step; see the module docstring. `start_sparsity` is the share of
    target weights at zero in entry 0 (`zeros_share`)."""

    def __init__(self, store: MaskStore, start_sparsity: float = 0.0):
        self.store = store
        self.start_sparsity = start_sparsity
        self.dense: dict[str, Any] | None = None  # entry 0's metrics, evaluated when first needed
        self._dense_at: dict[str, tuple] = {}  # the store's fingerprints when they were evaluated
        self.last_sensitivity: Any = None
        self.last_allocation: Any = None
        self.last_llm: Any = None  # the `workbench.llm.PruneResult` of the last prune_llm
        self._entries: list[HistoryEntry] = []

    # reading -----------------------------------------------------------------------------------
    @property
    def entries(self) -> tuple[HistoryEntry, ...]:
        """Entry 0 (dense) and one entry per recorded step; undone ones have ``active=False``."""
        pos = self.store.position
        label = "dense" if self.start_sparsity < SPARSE_START else f"start ({self.start_sparsity:.0%} zeros)"
        dense = HistoryEntry(0, label, None, {}, self.dense, self.start_sparsity, 0, 0.0, True)
        return (dense, *(replace(e, active=e.index <= pos) for e in self._entries))

    @property
    def current(self) -> HistoryEntry:
        """The entry of the current state."""
        return self.entries[self.store.position]

    def dense_metrics(self, state: State) -> dict[str, Any] | None:
        """Entry 0's metrics: evaluated on `state` the first time they are asked for at entry 0, and again there
        after weights were edited outside the workbench (`check_edits`); None before that when asked elsewhere, or
        without evaluation data."""
        self.check_edits()  # (reads version counters: no lock, so a dashboard refresh never waits for a running scan)
        if self.dense is None and state.data is not None and self.store.position == 0:
            self.dense = state.evaluate()
            self._dense_at = self.store.fingerprints()
        return self.dense

    def check_edits(self) -> None:
        """At the dense state: weights edited outside the workbench since the dense metrics were evaluated (none can
        be blended: no step is applied) make them stale. On top of applied steps the store refuses edits. The
        workbench's own writes (an undo back to entry 0 restores the dense weights bitwise) keep them."""
        if (
            self.dense is not None
            and self.store.position == 0
            and not self.store.in_transaction
            and self.store.outside_edits()
            and self.store.fingerprints() != self._dense_at
        ):
            self.dense = None

    # transactions ------------------------------------------------------------------------------
    def apply(self, state: State, plan: Any, *, label: str | None = None, evaluate: bool = True) -> HistoryEntry:
        """Prune `state`'s model in place as `plan` says (its masks: `state.preview(plan)`) and record the step with
        the resolved per-layer plans; returns its entry. See `Workbench.apply`."""
        from .plan import as_plan

        t0 = time.perf_counter()
        with self.store.lock:
            self.check_edits()
            plan = as_plan(plan)
            sel = state.preview(plan)
            layers = {k: v.to_dict() for k, v in sel.layers.items()}
            return self.record(state, sel.masks, label=label or repr(plan), plan=plan, layers=layers,
                               evaluate=evaluate, started=t0)  # fmt: skip

    def record(
        self,
        state: State,
        masks: Mapping[str, Tensor],
        *,
        label: str,
        plan: Any = None,
        layers: Mapping[str, dict[str, Any]] | None = None,
        kind: str = "prune",
        weights: Any = None,
        evaluate: bool = True,
        before: Mapping[str, Tensor] | None = None,
        started: float | None = None,
    ) -> HistoryEntry:
        """Apply `masks` as one store step (with a training step's weight swap `weights`; with `before`, record the
        step already written), evaluate `state` (unless ``evaluate=False``), add the entry; returns it. If the
        evaluation fails (or is interrupted) the step is rolled back and dropped, and the error re-raised. The
        arguments are those of `Workbench.apply_masks`, with `layers` (the resolved per-layer plans)."""
        from .plan import Plan
        from .report import target_sparsity

        plan_dict = plan.to_dict() if isinstance(plan, Plan) else plan
        store = self.store
        with store.lock:
            self.check_edits()
            t0 = time.perf_counter() if started is None else started
            if evaluate and before is None:
                self.dense_metrics(state)
            pos, info = store.position, {"plan": plan_dict, "kind": kind, "weights": weights}
            try:
                step = store.apply_(masks, info) if before is None else store.record_(masks, before, info)
                metrics = state.evaluate() if evaluate and state.data is not None else None
                entry = HistoryEntry(
                    index=pos + 1,
                    label=label,
                    plan=plan_dict,
                    layers=dict(layers or {}),
                    metrics=metrics,
                    sparsity=target_sparsity(state.model, state.targets),
                    removed=step.removed,
                    seconds=time.perf_counter() - t0,
                    active=True,
                    kind=kind,
                )
                with deferred_interrupt():
                    self._entries[pos:] = [entry]
            except BaseException:  # the step is dropped whole (also when Ctrl-C lands between two of these lines)
                settle(lambda: store.position == pos, store.discard_last_)
                del self._entries[len(store.steps) :]
                raise
            return self.current

    @contextmanager
    def trial(self) -> Iterator[int]:
        """Try steps and come back: what the block applies, trains or moves is undone and dropped when it ends (also
        on an error or Ctrl-C); the model (bitwise), the entries (redoable steps included), `last_sensitivity` and
        `last_allocation` are as before it. Yields the starting position (`MaskStore.trial`)."""
        entries, kept = list(self._entries), (self.last_sensitivity, self.last_allocation)
        try:
            with self.store.trial() as start:
                yield start
        finally:
            with deferred_interrupt():
                self._entries[:] = entries
                self.last_sensitivity, self.last_allocation = kept

    def truncate(self) -> None:
        """Drop the steps that could be redone (those after the current position) and their entries."""
        with self.store.lock, deferred_interrupt():
            self.store.truncate_()
            del self._entries[self.store.position :]

    def adopt(self, state: State, masks: Mapping[str, Tensor] | None = None) -> HistoryEntry:
        """The weights of `state`'s model as they are now become the new entry 0 (`Workbench.adopt`)."""
        with self.store.lock:
            self.store.adopt_(masks)
            self._rebase(state)
        return self.current

    def force_reset(self, state: State) -> list[str]:
        """The recorded dense values back wherever they fit, then the new entry 0 (`Workbench.reset(force=True)`);
        returns the names of the tensors left as they are."""
        with self.store.lock:
            skipped = self.store.force_reset_()
            self._rebase(state)
        return skipped

    def _rebase(self, state: State) -> None:
        self._entries.clear()
        self.dense = None
        self.start_sparsity = zeros_share(state.model, state.targets)
        self.last_sensitivity = None
        self.last_allocation = None


def zeros_share(model: nn.Module, targets: Targets) -> float:
    """Share of the targets' prunable weights that are exactly zero."""
    from .masks.fastops import count_nonzero

    total = zeros = 0
    with torch.no_grad():
        for t in targets:
            if t.tied_to:
                continue
            for n in t.param_names():
                p = model.get_parameter(n)
                total += p.numel()
                zeros += p.numel() - count_nonzero(p)
    return zeros / total if total else 0.0
