"""Monitoring a pruned model against its reference on incoming batches, and which layers to ease.

`Monitor(pruned, reference)` takes batches one at a time (`update(x, y)`) and records, per batch, how often the two
models agree (argmax equal), the accuracy of each when labels are given, and the confidence drift (mean max-softmax
probability of the pruned model minus the reference's). An alert fires when a batch's agreement falls below
`threshold` (once per crossing; `on_alert(alert)` is called with a plain dict). `monitor(...)` runs a whole stream
and returns the `MonitorResult`.

The reference is a module, or a history index of the pruned model's Workbench (``0`` or ``"dense"``: the dense
model): that state is visited on the live model with `workbench.analysis.states.at` (exact undo/redo, restored
bitwise), never copied.

`suggest_easing(bench, batches)` names the layers most responsible for disagreement: it puts back one layer's pruned
weights at a time (and the coupled slices that went with its channels) inside a transaction, measures the agreement
recovered, and suggests a lower ratio for the top layers. The model is left bitwise unchanged. It is an analysis,
`workbench.analysis.easing`, re-exported here.

>>> import torch, workbench as wb
>>> torch.manual_seed(0) and None
>>> model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))
>>> data = [(torch.randn(64, 8), torch.randint(0, 3, (64,))) for _ in range(3)]
>>> bench = wb.Workbench(model, data)
>>> res = monitor(bench, "dense", data)
>>> res.agreement, len(res.records)
(1.0, 3)
>>> _ = bench.apply(wb.Plan.global_(0.9))
>>> monitor(bench, "dense", data).agreement < 1.0
True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ._text import table_lines
from .analysis._stream import _pairs, _reference_index, _shape_of
from .analysis.easing import EasingSuggestion, _unit_masks, suggest_easing  # noqa: F401  (their old home)
from .errors import DataError, WorkbenchError
from .evaluate import eval_mode, model_device, to_device
from .state import as_state

__all__ = ["EasingSuggestion", "Monitor", "MonitorResult", "monitor", "suggest_easing"]


@dataclass(frozen=True)
class MonitorResult:
    """Per batch (`records`, plain dicts): ``batch``, ``n``, ``agreement``, ``accuracy_pruned``,
    ``accuracy_reference`` (None without labels), ``confidence_pruned``, ``confidence_reference``, ``drift``
    (pruned minus reference confidence), ``running_agreement``, ``below`` (under the threshold). Running totals
    over every sample seen are in `totals`; `alerts` holds each crossing below the threshold."""

    records: tuple[dict[str, Any], ...]
    totals: dict[str, Any]
    alerts: tuple[dict[str, Any], ...]
    threshold: float | None
    reference: str

    @property
    def agreement(self) -> float:
        return self.totals["agreement"]

    @property
    def drift(self) -> float:
        return self.totals["drift"]

    def series(self, key: str) -> np.ndarray:
        """One record field over the batches as a float array (None -> NaN)."""
        return np.array([np.nan if r[key] is None else float(r[key]) for r in self.records], dtype=float)

    def to_dict(self) -> dict[str, Any]:
        return {
            "records": [dict(r) for r in self.records],
            "totals": dict(self.totals),
            "alerts": [dict(a) for a in self.alerts],
            "threshold": self.threshold,
            "reference": self.reference,
        }

    def table(self) -> str:
        def f(v: Any, fmt: str = ".3f") -> str:
            return "-" if v is None else format(v, fmt)

        head = ("batch", "n", "agree", "acc pruned", "acc ref", "drift", "running", "alert")
        rows = [head]
        for r in self.records:
            rows.append((str(r["batch"]), str(r["n"]), f(r["agreement"]), f(r["accuracy_pruned"]),
                         f(r["accuracy_reference"]), f(r["drift"], "+.3f"), f(r["running_agreement"]),
                         "below" if r["below"] else ""))  # fmt: skip
        lines = table_lines(rows, right=range(len(head)))
        t = self.totals
        lines.append(
            f"{t['n']} samples vs {self.reference}: agreement {f(t['agreement'])}, accuracy {f(t['accuracy_pruned'])} "
            f"vs {f(t['accuracy_reference'])}, confidence drift {f(t['drift'], '+.3f')}, {len(self.alerts)} alert(s)"
        )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


class Monitor:
    """Incremental monitor of `pruned` (a module or a Workbench, in its current state) vs `reference` (a module, or
    a history index / ``"dense"`` of that Workbench). `threshold`: alert when a batch's agreement is below it.
    `input_shape`: the shape of one sample (default: the bench's example inputs, else the first batch's).

    >>> import torch
    >>> m = torch.nn.Linear(4, 3)
    >>> seen = []
    >>> mon = Monitor(m, m, threshold=0.9, on_alert=seen.append)
    >>> mon.update(torch.randn(5, 4))["agreement"], seen
    (1.0, [])
    """

    def __init__(
        self,
        pruned: Any,
        reference: Any,
        *,
        threshold: float | None = None,
        on_alert: Callable[[dict[str, Any]], Any] | None = None,
        input_shape: tuple[int, ...] | None = None,
    ):
        state = None
        if not isinstance(pruned, nn.Module):
            state = as_state(pruned, error=WorkbenchError, what="the pruned model must be an nn.Module or a Workbench")
        self.state, self.model = state, pruned if state is None else state.model
        self.ref_index = _reference_index(state, reference)
        if self.ref_index is None:
            if not isinstance(reference, nn.Module):
                what = "reference must be an nn.Module, a history index of the pruned model's Workbench or 'dense'"
                reference = as_state(reference, error=WorkbenchError, what=what).model
        self.reference = reference if self.ref_index is None else None
        if threshold is not None and (isinstance(threshold, bool) or not 0.0 <= float(threshold) <= 1.0):
            raise WorkbenchError(f"threshold is an agreement rate in [0, 1], got {threshold!r}")
        if on_alert is not None and not callable(on_alert):
            raise WorkbenchError(f"on_alert must be callable (it gets the alert dict), got {on_alert!r}")
        self.threshold = None if threshold is None else float(threshold)
        self.on_alert = on_alert
        if input_shape is None and state is not None:
            input_shape = _shape_of(state.example_inputs)
        self.input_shape = None if input_shape is None else tuple(input_shape)
        self.records: list[dict[str, Any]] = []
        self.alerts: list[dict[str, Any]] = []
        self._sums = {"n": 0, "agree": 0.0, "hits_p": 0.0, "hits_r": 0.0, "labelled": 0, "conf_p": 0.0, "conf_r": 0.0}
        self._below = False

    @property
    def reference_label(self) -> str:
        if self.ref_index is None:
            return "reference module"
        return "dense" if self.ref_index == 0 else f"history entry {self.ref_index}"

    def _check(self, x: Any, y: Any) -> None:
        i = len(self.records)
        if not isinstance(x, Tensor):
            raise DataError(f"batch {i}: the monitor takes one input tensor per batch, got {type(x).__name__}")
        if self.input_shape is not None and tuple(x.shape[1:]) != self.input_shape:
            raise DataError(
                f"batch {i} has inputs of shape {tuple(x.shape)}; the models expect (batch, "
                f"{', '.join(map(str, self.input_shape))}), i.e. samples of shape {self.input_shape}"
            )
        if x.dim() == 0 or x.shape[0] == 0:
            raise DataError(f"batch {i} is empty (inputs of shape {tuple(x.shape)})")
        if y is not None and (not isinstance(y, Tensor) or y.shape[:1] != x.shape[:1]):
            got = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
            raise DataError(
                f"batch {i}: labels of shape {got} do not match {x.shape[0]} inputs; expected ({x.shape[0]},)"
            )

    def _outputs(self, x: Tensor) -> tuple[Tensor, Tensor]:
        from .analysis.states import at, logits

        with eval_mode(self.model), torch.inference_mode():
            out_p = logits(self.model, x).float()
            if self.ref_index is None:
                with eval_mode(self.reference):
                    out_r = logits(self.reference, to_device(x, model_device(self.reference))).float()
            else:
                with at(self.state, self.ref_index):
                    out_r = logits(self.model, x).float()
        if out_p.shape != out_r.shape or out_p.dim() != 2:
            raise DataError(
                f"the models' outputs must be (batch, classes) logits of the same shape, got {tuple(out_p.shape)} "
                f"and {tuple(out_r.shape)}"
            )
        return out_p, out_r.to(out_p.device)

    def update(self, x: Any, y: Tensor | None = None) -> dict[str, Any]:
        """Feed one batch (inputs, optional integer labels); returns its record (and fires an alert if due)."""
        self._check(x, y)
        x = to_device(x, model_device(self.model), f"batch {len(self.records)} inputs")
        try:
            out_p, out_r = self._outputs(x)
        except DataError:
            raise
        except RuntimeError as e:  # the first batch fixes the shape when nothing else says it: name it on failure
            raise DataError(
                f"batch {len(self.records)} with inputs of shape {tuple(x.shape)} does not fit the models: {e}"
            ) from None
        if self.input_shape is None:
            self.input_shape = tuple(x.shape[1:])
        pred_p, pred_r = out_p.argmax(1), out_r.argmax(1)
        n = int(x.shape[0])
        agree = float((pred_p == pred_r).float().mean())
        conf_p = float(out_p.softmax(1).max(1).values.mean())
        conf_r = float(out_r.softmax(1).max(1).values.mean())
        acc_p = acc_r = None
        s = self._sums
        if y is not None:
            yd = y.to(pred_p.device)
            acc_p, acc_r = float((pred_p == yd).float().mean()), float((pred_r == yd).float().mean())
            s["hits_p"] += acc_p * n
            s["hits_r"] += acc_r * n
            s["labelled"] += n
        s["n"] += n
        s["agree"] += agree * n
        s["conf_p"] += conf_p * n
        s["conf_r"] += conf_r * n
        below = self.threshold is not None and agree < self.threshold
        record = {
            "batch": len(self.records),
            "n": n,
            "agreement": agree,
            "accuracy_pruned": acc_p,
            "accuracy_reference": acc_r,
            "confidence_pruned": conf_p,
            "confidence_reference": conf_r,
            "drift": conf_p - conf_r,
            "running_agreement": s["agree"] / s["n"],
            "below": below,
        }
        self.records.append(record)
        if below and not self._below:
            alert = {
                "batch": record["batch"],
                "agreement": agree,
                "threshold": self.threshold,
                "running_agreement": record["running_agreement"],
                "message": f"batch {record['batch']}: agreement {agree:.3f} with the {self.reference_label} fell below "
                f"{self.threshold:.3f} (running {record['running_agreement']:.3f})",
            }
            self.alerts.append(alert)
            if self.on_alert is not None:
                self.on_alert(alert)
        self._below = below
        return record

    def totals(self) -> dict[str, Any]:
        s = self._sums
        n = s["n"]
        lab = s["labelled"]
        return {
            "n": n,
            "batches": len(self.records),
            "agreement": s["agree"] / n if n else math.nan,
            "accuracy_pruned": s["hits_p"] / lab if lab else None,
            "accuracy_reference": s["hits_r"] / lab if lab else None,
            "confidence_pruned": s["conf_p"] / n if n else math.nan,
            "confidence_reference": s["conf_r"] / n if n else math.nan,
            "drift": (s["conf_p"] - s["conf_r"]) / n if n else math.nan,
        }

    @property
    def result(self) -> MonitorResult:
        """What was seen so far, as plain data."""
        return MonitorResult(
            tuple(dict(r) for r in self.records),
            self.totals(),
            tuple(dict(a) for a in self.alerts),
            self.threshold,
            self.reference_label,
        )


def monitor(
    pruned: Any,
    reference: Any,
    batches: Iterable,
    *,
    threshold: float | None = None,
    on_alert: Callable[[dict[str, Any]], Any] | None = None,
    input_shape: tuple[int, ...] | None = None,
) -> MonitorResult:
    """Run a `Monitor` over `batches` (``(x, y)`` pairs or bare input tensors); returns its `MonitorResult`."""
    mon = Monitor(pruned, reference, threshold=threshold, on_alert=on_alert, input_shape=input_shape)
    for x, y in _pairs(batches):
        mon.update(x, y)
    if not mon.records:
        raise DataError("the monitor got no batches; pass an iterable of (inputs, labels) or input tensors")
    return mon.result
