"""The Workbench: one live model, its targets, plans applied in place, exact undo/redo, and evaluation.

>>> import torch, workbench as wb
>>> model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
>>> data = [(torch.randn(32, 8), torch.randint(0, 3, (32,)))]
>>> bench = wb.Workbench(model, data)
>>> entry = bench.apply(wb.Plan.uniform(0.5))
>>> round(bench.report().sparsity, 2)
0.5
>>> _ = bench.undo(); bench.report().sparsity
0.0
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Iterable
from typing import Any

from torch import Tensor, nn

from ._bench_analyses import Analyses
from ._bench_history import HistoryExport
from ._bench_moves import Moves
from ._bench_procedures import Procedures
from .adapter import Adapter
from .errors import ModelError, WorkbenchWarning
from .evaluate import MetricLike, check_metric, model_device, model_dtype, reiterable, to_device
from .groups import GroupAnalysis, analyze_groups
from .history import SPARSE_START, History, HistoryEntry, zeros_share
from .masks import MaskStore
from .plan import Plan
from .report import Report, layer_reports
from .state import State
from .targets import Targets, find_targets

__all__ = ["HistoryEntry", "Workbench"]

_BENCHES: weakref.WeakKeyDictionary[nn.Module, list[weakref.ref[Workbench]]] = weakref.WeakKeyDictionary()


class Workbench(Moves, Procedures, Analyses, HistoryExport):
    """Attach to a live `nn.Module` to prune it in place, evaluate, undo and redo.

    `data` is the evaluation data: a re-iterable of batches (a DataLoader, a list) in any form the adapter reads
    (`workbench.adapter`: ``(inputs, labels)`` pairs, Hugging Face dicts with ``input_ids`` / ``pixel_values`` /
    ``labels`` ..., or anything through ``batch_fn=lambda batch: (inputs, target)``), or a demo `DemoData` (then
    `data.val` evaluates, `data.calib` calibrates and `data.train` trains). `task` is detected from the model and
    the first batch (classification, regression, causal-lm, masked-lm, seq2seq) unless given. `metric` is
    ``"accuracy"``, ``"loss"``, ``"perplexity"``, a `workbench.Metric` or a callable ``(model, data) -> float``;
    None takes the task's default (accuracy for classification, perplexity for language models, the loss for
    regression). `example_inputs` (default: two samples of the first batch) are used once to trace coupled
    channels for structured pruning. The model is never copied, wrapped or hooked.
    """

    def __init__(
        self,
        model: nn.Module,
        data: Iterable | None = None,
        metric: MetricLike = None,
        *,
        task: str | None = None,
        batch_fn: Any = None,
        train: Iterable | None = None,
        calib: Iterable | None = None,
        example_inputs: Tensor | tuple | None = None,
        name: str | None = None,
        seed: int = 0,
    ):
        if not isinstance(model, nn.Module):
            raise ModelError(f"Workbench needs a torch.nn.Module, got {type(model).__name__}")
        if hasattr(data, "val") and hasattr(data, "train"):  # a DemoData bundle
            train = train if train is not None else data.train
            calib = calib if calib is not None else getattr(data, "calib", None)
            example_inputs = example_inputs if example_inputs is not None else getattr(data, "example", None)
            name = name or getattr(data, "name", None)
            data = data.val
        for what, d in (("data", data), ("train", train), ("calib", calib)):
            reiterable(d, what)
        check_metric(metric, warn=True)
        earlier = _attached(model)
        self.model = model
        self.adapter = Adapter(model, task, batch_fn)
        self.data = data
        self.train = train
        self.calib = calib if calib is not None else data
        if metric is None:
            metric = self.adapter.detect(data).metrics[0] if data is not None else "accuracy"
        self.metric = metric
        self.seed = seed
        self.name = name or type(model).__name__
        if example_inputs is None and data is not None:
            example_inputs = self.adapter.example(data)
        if example_inputs is not None:
            example_inputs = to_device(example_inputs, model_device(model), "example_inputs", model_dtype(model))
        self.example_inputs = example_inputs
        self.groups: GroupAnalysis | None = None if example_inputs is None else analyze_groups(model, example_inputs)
        self.targets: Targets = find_targets(model, self.groups)
        self.store = MaskStore(model)
        self._log = History(self.store, zeros_share(model, self.targets))  # entries, dense metrics, last results
        _BENCHES.setdefault(model, []).append(weakref.ref(self))
        if earlier is not None:
            warnings.warn(
                f"this model already has a Workbench with {earlier.store.position} pruning step(s) applied "
                f"({earlier!r}); the weights that bench pruned are held by it, and this new bench starts from the "
                "pruned model. To get the original weights back, reset the first bench: "
                "wb.Workbench.of(model).reset() (or keep using it instead of a new one).",
                WorkbenchWarning,
                stacklevel=2,
            )
        elif self.start_sparsity >= SPARSE_START:
            warnings.warn(
                f"the model already had {self.start_sparsity:.0%} of its target weights at zero: history entry 0 "
                "is this state, not a dense model (bench.start_sparsity)",
                WorkbenchWarning,
                stacklevel=2,
            )

    @property
    def state(self) -> State:
        """What analyses, training, `compile`, `compare`, `recommend` and `monitor` read: a `workbench.State` of the
        live model, its store, data and history (not a copy)."""
        return State(self.model, self.adapter, self.targets, self.groups, self.store, self.data, self.calib,
                     self.train, self.metric, self.seed, self.example_inputs, self.name, log=self._log)  # fmt: skip

    # what the history keeps (`workbench.history.History`) -------------------------------------
    @property
    def start_sparsity(self) -> float:
        """Share of the targets' weights that were exactly zero in entry 0 (when the bench attached, or at the last
        `adopt` / ``reset(force=True)``)."""
        return self._log.start_sparsity

    @property
    def last_sensitivity(self):
        """The last `sensitivity` result (None after a new starting point; a `trial` puts it back)."""
        return self._log.last_sensitivity

    @last_sensitivity.setter
    def last_sensitivity(self, value) -> None:
        self._log.last_sensitivity = value

    @property
    def last_allocation(self):
        """The last `allocate` result (None after a new starting point; a `trial` puts it back)."""
        return self._log.last_allocation

    @last_allocation.setter
    def last_allocation(self, value) -> None:
        self._log.last_allocation = value

    @property
    def last_llm(self):
        """The `workbench.llm.PruneResult` of the last `prune_llm`."""
        return self._log.last_llm

    @last_llm.setter
    def last_llm(self, value) -> None:
        self._log.last_llm = value

    def evaluate(self, data: Iterable | None = None, metric: MetricLike | None = None) -> dict[str, Any]:
        """Evaluate the model as it is now: ``{"metric", "accuracy", "loss", "per_class", ...}``."""
        return self.state.evaluate(data, metric)

    # pruning -----------------------------------------------------------------------------------
    def preview(self, plan: Plan):
        """The masks `plan` would apply (a `Selection`), without changing the model."""
        return self.state.preview(plan)

    def apply(self, plan: Plan, *, label: str | None = None, evaluate: bool = True) -> HistoryEntry:
        """Prune in place as `plan` says and record a history step; returns its entry.

        Bad plans raise a `workbench.errors.PlanError` (or `ModelError`) before any weight changes. If the
        evaluation after the step fails, the step is undone and the error re-raised.
        """
        return self.state.apply(plan, label=label, evaluate=evaluate)

    def apply_masks(
        self,
        masks: dict[str, Tensor],
        *,
        label: str,
        plan: Plan | dict[str, Any] | None = None,
        kind: str = "prune",
        weights: Any = None,
        evaluate: bool = True,
        before: dict[str, Tensor] | None = None,
        started: float | None = None,
    ) -> HistoryEntry:
        """Record masks you computed (True = pruned, by full parameter name) as one history step, like `apply`.

        `weights` is for training procedures (`workbench.training`): a swap holding the values of the other
        tensors the step changed; the step is recorded on the state before it, then the swap puts the trained
        values in, and undo/redo exchange them again, bitwise. With `before` (per masked parameter, its flagged
        elements' values before the step, as ``p[mask]``) the step is already written in the model (the masks are
        zero, the swap holds the old values of the tensors it updated) and is recorded without writing it again
        (`MaskStore.record_`). `started` (a `time.perf_counter()` value) is when the step's work began: the
        entry's seconds count from there.

        >>> import torch, workbench as wb
        >>> bench = wb.Workbench(torch.nn.Linear(4, 2), [(torch.randn(8, 4), torch.randint(0, 2, (8,)))])
        >>> mask = torch.zeros(2, 4, dtype=torch.bool); mask[0] = True
        >>> bench.apply_masks({"weight": mask}, label="row 0").removed
        4
        """
        return self._log.record(self.state, masks, label=label, plan=plan, kind=kind, weights=weights,
                                evaluate=evaluate, before=before, started=started)  # fmt: skip

    @classmethod
    def of(cls, model: nn.Module) -> Workbench | None:
        """The earliest live Workbench attached to `model` that has steps applied (else the latest one; None if no
        bench is attached): the one to `reset()` for the model's original weights."""
        benches = [b for r in _BENCHES.get(model, ()) if (b := r()) is not None]
        for b in benches:
            if b.store.position:
                return b
        return benches[-1] if benches else None

    @property
    def history(self) -> tuple[HistoryEntry, ...]:
        """Entry 0 (dense) and one entry per recorded step; undone ones have ``active=False``."""
        return self._log.entries

    @property
    def current(self) -> HistoryEntry:
        return self._log.current

    @property
    def masks(self) -> dict[str, Tensor]:
        """Current masks (True = pruned) by full parameter name."""
        return self.store.masks()

    def report(self, *, evaluate: bool = True) -> Report:
        """Per layer: parameters, non-zeros, sparsity; with the metric dense vs now (evaluated if needed)."""
        now = None
        if evaluate and self.data is not None:
            pos = self.store.position
            entry_metrics = self.history[pos].metrics if pos else None
            now = entry_metrics or (self._log.dense_metrics(self.state) if pos == 0 else self.evaluate())
        return Report(
            layers=layer_reports(self.model, self.targets),
            model_params=sum(p.numel() for p in self.model.parameters()),
            dense=self._log.dense if evaluate else None,
            now=now,
            steps=self.store.position,
            start_sparsity=self.start_sparsity,
        )

    def show(self, *, new: bool = False, **kwargs: Any):
        """The interactive dashboard for this bench (ipywidgets). Showing it again returns the same dashboard, so
        its state survives closing the output; ``new=True`` builds a fresh one. Raises ModuleNotFoundError naming the
        extra to install when the dashboard's packages (ipywidgets, anywidget, matplotlib) are missing."""
        try:
            from .ui import dashboard_of
        except ModuleNotFoundError as e:
            if e.name not in ("ipywidgets", "anywidget", "matplotlib", "traitlets"):
                raise
            raise ModuleNotFoundError(
                f"the dashboard needs {e.name}, which is not installed: pip install 'workbench[ui]' (ipywidgets, "
                "anywidget, matplotlib), then restart the kernel",
                name=e.name,
            ) from e
        return dashboard_of(self, new=new, **kwargs)

    def __repr__(self) -> str:
        return (
            f"Workbench({self.name}: {len(self.targets)} targets, {self.store.position} steps applied, "
            f"metric={getattr(self.metric, '__name__', self.metric)!r})"
        )


def _attached(model: nn.Module) -> Workbench | None:
    """A live bench already attached to `model` with steps applied (the one holding its original weights)."""
    earlier = Workbench.of(model) if model in _BENCHES else None
    return earlier if earlier is not None and earlier.store.position else None
