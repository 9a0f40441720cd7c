"""Accuracy, generalization and bias before vs after pruning: what the average accuracy hides.

Pruning hurts some classes and atypical samples far more than the mean shows (Hooker et al. 2019, "What do
compressed deep neural networks forget?"). For two history states of the live model (by default the state before
the current step and now; each visited as a transaction, restored bitwise) `bias` reports per-class accuracy and
the classes hurt most, the confusion-matrix delta, the *pruning-identified exemplars* (samples whose prediction
differs between the states) and the train-vs-val accuracy gap. Given plans of increasing sparsity it also draws
overall vs worst-class accuracy, each plan evaluated on a structural clone (the live weights are never written).
`compare_states(bench, a, b)` is the light version for any two entries: metrics, sparsity, agreement.

>>> import torch, workbench as wb
>>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
>>> bench = wb.Workbench(model, [(torch.rand(32, 1, 4, 4), torch.randint(0, 3, (32,)))])
>>> _ = bench.apply(wb.Plan.uniform(0.5))
>>> b = bench.bias()
>>> b.counts.sum(), round(float((b.per_class_after * b.counts).sum() / b.counts.sum()), 6) == round(b.accuracy_after, 6)
(np.int64(32), True)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import DataError, WorkbenchError
from ..evaluate import batches, eval_mode
from ..report import target_sparsity
from ..state import as_state
from ._graph import clone_with, masked_params
from .sensitivity import _bar
from .states import at, default_pair, label_of, logits, resolve

__all__ = ["BiasResult", "StateComparison", "bias", "compare_states"]


def _predict(model: nn.Module, data: Iterable, keep: bool = False) -> tuple[np.ndarray, np.ndarray, list[Tensor], int]:
    """Predictions and labels over `data` (eval mode, no autograd), the input batches when `keep`, and the number
    of classes (the logits' width)."""
    preds, labels, inputs, width = [], [], [], 0
    with eval_mode(model), torch.inference_mode():
        for x, y in batches(data, model):
            out = logits(model, x)
            if out.dim() != 2 or y.is_floating_point():
                raise DataError("bias needs class labels (integer) and 2-D logits (a classifier)")
            preds.append(out.argmax(1).cpu())
            width = int(out.shape[1])
            labels.append(y.cpu())
            if keep and isinstance(x, Tensor):
                inputs.append(x.cpu())
    if not preds:
        raise DataError("the data yielded no samples; pass a non-empty DataLoader of (inputs, labels)")
    return torch.cat(preds).numpy(), torch.cat(labels).numpy(), inputs, width


def _accuracy_on(model: nn.Module, data: Iterable) -> float:
    p, y, _, _ = _predict(model, data)
    return float(np.mean(p == y))


class _Untouched:
    """Iterate a DataLoader without advancing its shuffling generator (so evaluating on the training data does not
    change the order a later training run sees)."""

    def __init__(self, data: Iterable):
        self.data = data

    def __iter__(self):
        found = (getattr(self.data, "generator", None), getattr(getattr(self.data, "sampler", None), "generator", None))
        gens = {id(g): g for g in found if g is not None}
        states = {k: g.get_state() for k, g in gens.items()}
        try:
            yield from self.data
        finally:
            for k, g in gens.items():
                g.set_state(states[k])


@dataclass(frozen=True)
class BiasResult:
    """Per-class accuracy, confusion and flipped samples of two history states; optional sparsity curve.

    `confusion_*[i, j]` counts samples of class i predicted as j. `exemplars` index the samples (in data order)
    whose prediction differs between the states, those that went from right to wrong first (`forgotten` of them;
    `learned` went from wrong to right); `exemplar_inputs` holds up to `max_exemplars` of them. The `curve_*`
    arrays are empty unless plans were given.
    """

    classes: tuple[str, ...]
    before: int
    after: int
    before_label: str
    after_label: str
    counts: np.ndarray
    per_class_before: np.ndarray
    per_class_after: np.ndarray
    accuracy_before: float
    accuracy_after: float
    confusion_before: np.ndarray
    confusion_after: np.ndarray
    exemplars: np.ndarray
    exemplar_inputs: np.ndarray
    exemplar_labels: np.ndarray
    exemplar_before: np.ndarray
    exemplar_after: np.ndarray
    train_before: float
    train_after: float
    curve_sparsity: np.ndarray
    curve_overall: np.ndarray
    curve_worst: np.ndarray
    curve_worst_class: np.ndarray
    curve_labels: tuple[str, ...] = ()
    forgotten: int = 0
    learned: int = 0
    seconds: float = 0.0

    @property
    def delta(self) -> np.ndarray:
        """Per-class accuracy change (after minus before); NaN for classes absent from the data."""
        return self.per_class_after - self.per_class_before

    @property
    def hurt(self) -> list[int]:
        """Classes ordered from most hurt (largest accuracy drop) to least."""
        d = np.where(np.isnan(self.delta), np.inf, self.delta)
        return [int(i) for i in np.argsort(d, kind="stable")]

    @property
    def confusion_delta(self) -> np.ndarray:
        return self.confusion_after - self.confusion_before

    @property
    def n_flipped(self) -> int:
        return len(self.exemplars)

    @property
    def gap_before(self) -> float:
        """Train minus val accuracy before (generalization gap; NaN without training data)."""
        return self.train_before - self.accuracy_before

    @property
    def gap_after(self) -> float:
        return self.train_after - self.accuracy_after

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d = {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in d.items()}
        extra = {"hurt": self.hurt, "n_flipped": self.n_flipped, "gap_before": self.gap_before}
        return d | extra | {"gap_after": self.gap_after}


def _per_class(conf: np.ndarray) -> np.ndarray:
    counts = conf.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, np.diag(conf) / np.maximum(counts, 1), np.nan)


def _confusion(y: np.ndarray, p: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(y * k + p, minlength=k * k).reshape(k, k)


def _plans(plans: Sequence[Any] | None):
    from ..plan import Plan

    out = []
    for p in plans or ():
        if isinstance(p, (int, float)) and not isinstance(p, bool):
            out.append(Plan.global_(float(p), criterion="magnitude"))
        elif isinstance(p, Plan):
            out.append(p)
        else:
            raise WorkbenchError(f"plans must be Plans or sparsities (floats in [0, 1)), got {p!r}")
    return out


def bias(
    state,
    *,
    before: int | None = None,
    after: int | None = None,
    data: Iterable | None = None,
    train: Iterable | None = None,
    classes: Sequence[str] | None = None,
    plans: Sequence[Any] | None = None,
    base: int = 0,
    max_exemplars: int = 32,
    progress: Callable[[int, int], None] | bool | None = None,
) -> BiasResult:
    """Per-class accuracy, confusion, flipped samples and train/val gap in history states `before` and `after`
    (default: the state before the current step and now) on `data` (default: the evaluation data) and `train`
    (default: the bench's training data; skipped when there is none).

    `plans`: Plans (or sparsities, meaning ``Plan.global_(s)``) of increasing sparsity; each is applied on top of
    history entry `base` (default: dense) on a structural clone and gives one point of overall vs worst-class
    accuracy.
    """
    state = as_state(state)
    t0 = time.perf_counter()
    b, a = default_pair(state, before, after)
    base = resolve(state, base)
    chosen_plans = _plans(plans)
    data = state.data if data is None else data
    if data is None:
        raise DataError("bias needs data: pass data= or create the Workbench with data")
    train = state.train if train is None else train
    model = state.model
    total, done = 2 * (2 if train is not None else 1) + len(chosen_plans), [0]
    bar = _bar(progress, total, "bias")  # True: a tqdm bar; a callback; False/None: nothing

    def tick() -> None:
        done[0] += 1
        bar(1, close=done[0] == total)

    if callable(progress):
        progress(0, total)
    preds: dict[int, np.ndarray] = {}
    train_acc: dict[int, float] = {}
    inputs: list[Tensor] = []
    y = np.zeros(0, dtype=np.int64)
    width = 0
    for s in (b, a):
        with at(state, s):
            preds[s], y, got, width = _predict(model, data, keep=not inputs)
            inputs = inputs or got
            tick()
            if train is not None:
                train_acc[s] = _accuracy_on(model, _Untouched(train))
                tick()
    k = max(int(max(y.max(), preds[b].max(), preds[a].max())) + 1, width)
    if classes is not None:
        if len(classes) < k:
            raise DataError(f"classes names {len(classes)} classes but the data and predictions use {k}")
        k = len(classes)
    names = tuple(classes) if classes is not None else tuple(str(i) for i in range(k))
    cb, ca = _confusion(y, preds[b], k), _confusion(y, preds[a], k)
    flipped = np.flatnonzero(preds[b] != preds[a])
    # right -> wrong first (what pruning forgot), then wrong -> right, then wrong -> other wrong
    order = np.argsort(
        np.where(preds[b][flipped] == y[flipped], 0, np.where(preds[a][flipped] == y[flipped], 1, 2)), kind="stable"
    )
    flipped = flipped[order]
    shown = flipped[:max_exemplars]
    all_x = torch.cat(inputs).numpy() if inputs else np.zeros((len(y), 0))
    curve = _curve(state, chosen_plans, base, data, k, tick)
    return BiasResult(
        classes=names,
        before=b,
        after=a,
        before_label=label_of(state, b),
        after_label=label_of(state, a),
        counts=cb.sum(1),
        per_class_before=_per_class(cb),
        per_class_after=_per_class(ca),
        accuracy_before=float(np.trace(cb) / len(y)),
        accuracy_after=float(np.trace(ca) / len(y)),
        confusion_before=cb,
        confusion_after=ca,
        exemplars=flipped,
        exemplar_inputs=all_x[shown],
        exemplar_labels=y[shown],
        exemplar_before=preds[b][shown],
        exemplar_after=preds[a][shown],
        train_before=train_acc.get(b, float("nan")),
        train_after=train_acc.get(a, float("nan")),
        curve_sparsity=curve[0],
        curve_overall=curve[1],
        curve_worst=curve[2],
        curve_worst_class=curve[3],
        curve_labels=curve[4],
        forgotten=int(np.sum((preds[b] == y) & (preds[a] != y))),
        learned=int(np.sum((preds[b] != y) & (preds[a] == y))),
        seconds=time.perf_counter() - t0,
    )


def _curve(state, plans, base: int, data, k: int, tick) -> tuple:
    """Overall and worst-class accuracy of entry `base` with each plan's masks, on structural clones."""
    sp, overall, worst, worst_c, labels = [], [], [], [], []
    if not plans:
        e = np.zeros(0)
        return e, e, e, np.zeros(0, dtype=int), ()
    model = state.model
    with at(state, base):
        current = state.store.masks()
        sizes = {p: state.model.get_parameter(p).numel() for t in state.targets for p in t.param_names()}
        for plan in plans:
            sel = state.preview(plan)
            masks = {n: m | current[n] if n in current else m for n, m in sel.masks.items()}
            merged = {**current, **masks}
            pruned = sum(int(m.sum()) for n, m in merged.items() if n in sizes)
            sp.append(pruned / max(1, sum(sizes.values())))
            clone = clone_with(model, masked_params(model, masks))
            p, y, _, _ = _predict(clone, data)
            per = _per_class(_confusion(y, p, k))
            overall.append(float(np.mean(p == y)))
            j = int(np.nanargmin(per))
            worst.append(float(per[j]))
            worst_c.append(j)
            labels.append(repr(plan))
            tick()
    return np.array(sp), np.array(overall), np.array(worst), np.array(worst_c), tuple(labels)


# two states at a glance ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StateComparison:
    """Two history entries side by side: their evaluation, sparsity and how often they predict the same class."""

    a: int
    b: int
    a_label: str
    b_label: str
    metrics_a: dict[str, Any]
    metrics_b: dict[str, Any]
    sparsity_a: float
    sparsity_b: float
    agreement: float
    n: int

    @property
    def delta(self) -> float:
        """Metric of `b` minus metric of `a`."""
        return float(self.metrics_b["metric"] - self.metrics_a["metric"])

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__} | {"delta": self.delta}

    def __str__(self) -> str:
        name = self.metrics_a.get("metric_name", "metric")
        return (
            f"{self.a_label} -> {self.b_label}: {name} {self.metrics_a['metric']:.4f} -> {self.metrics_b['metric']:.4f} "
            f"({self.delta:+.4f}), sparsity {self.sparsity_a:.1%} -> {self.sparsity_b:.1%}, "
            f"same prediction on {self.agreement:.1%} of {self.n} samples"
        )


def compare_states(state, a: int = 0, b: int = -1, *, data: Iterable | None = None) -> StateComparison:
    """Evaluate history entries `a` and `b` (negative: counted from the end of `bench.history`) on `data`
    (default: the evaluation data), each visited as a transaction; the model ends as it started, bitwise."""
    state = as_state(state)
    ia, ib = resolve(state, a), resolve(state, b)
    data = state.data if data is None else data
    if data is None:
        raise DataError("compare_states needs data: pass data= or create the Workbench with data")
    out = {}
    for i in (ia, ib):
        with at(state, i):
            metrics = state.evaluate(data)
            p = _predict(state.model, data)[0] if "accuracy" in metrics else None
            out[i] = (metrics, p, target_sparsity(state.model, state.targets))
    (ma, pa, sa), (mb, pb, sb) = out[ia], out[ib]
    agree = float(np.mean(pa == pb)) if pa is not None else float("nan")
    return StateComparison(ia, ib, label_of(state, ia), label_of(state, ib), ma, mb, sa, sb, agree, int(ma["n"]))
