"""Evaluating the live model: a metric, the loss and per-class accuracy, leaving the model as it was."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import DataError

__all__ = [
    "Metric",
    "MetricLike",
    "eval_mode",
    "evaluate",
    "higher_is_better",
    "model_device",
    "reiterable",
    "to_device",
]


class Metric:
    """A metric function ``fn(model, data) -> float`` with its direction, for everything that ranks by it
    (sensitivity, allocate, compare, recommend, monitor, the dashboard).

    >>> mae = Metric(lambda model, data: 0.1, higher_is_better=False, name="mae")
    >>> mae.higher_is_better, mae.__name__, higher_is_better(mae), higher_is_better("loss")
    (False, 'mae', False, False)
    """

    def __init__(self, fn: Callable[[nn.Module, Any], float], *, higher_is_better: bool, name: str | None = None):
        if not callable(fn):
            raise DataError(f"Metric needs a callable (model, data) -> float, got {type(fn).__name__}")
        if not isinstance(higher_is_better, bool):
            raise DataError(f"higher_is_better must be True or False, got {higher_is_better!r}")
        self.fn = fn
        self.higher_is_better = higher_is_better
        self.__name__ = name or getattr(fn, "__name__", "metric")

    def __call__(self, model: nn.Module, data: Any) -> float:
        return self.fn(model, data)

    def __repr__(self) -> str:
        return f"Metric({self.__name__!r}, higher_is_better={self.higher_is_better})"


MetricLike = str | Metric | Callable[[nn.Module, Any], float]
METRICS = ("accuracy", "loss")


def higher_is_better(metric: MetricLike) -> bool:
    """The direction of `metric`: ``"loss"`` is lower-is-better, ``"accuracy"`` higher; a `Metric` says; a plain
    callable is taken as higher-is-better (wrap it in `Metric` to say otherwise)."""
    if isinstance(metric, str):
        return metric != "loss"
    return bool(getattr(metric, "higher_is_better", True))


def reiterable(data: Any, what: str = "data") -> None:
    """Raise a `DataError` for a one-shot iterator (a generator, ``iter(loader)``): the workbench reads its data many
    times (evaluate, every scan point), and a second pass over an iterator would silently see fewer samples."""
    if data is None or isinstance(data, (list, tuple)):
        return
    try:
        one_shot = iter(data) is data
    except TypeError:
        raise DataError(
            f"{what} must be an iterable of batches (a DataLoader or a list), got {type(data).__name__}"
        ) from None
    if one_shot:
        raise DataError(
            f"{what} is a one-shot iterator ({type(data).__name__}): the workbench reads its data many times and a "
            "second pass would be empty. Pass something re-iterable: the DataLoader itself, or list(...) of the batches"
        )


def model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


@contextmanager
def eval_mode(model: nn.Module):
    """Put every submodule in eval mode and restore each one's own flag afterwards, also on error."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


def model_dtype(model: nn.Module) -> torch.dtype | None:
    """The floating dtype of the model's first floating parameter (or buffer); None if it has none."""
    for t in (*model.parameters(), *model.buffers()):
        if t.is_floating_point():
            return t.dtype
    return None


def to_device(x: Any, device: torch.device, where: str = "data", dtype: torch.dtype | None = None) -> Any:
    """Move a batch to the model's device: CPU tensors move; a tensor on another accelerator is an error.
    With `dtype`, floating tensors are also cast to it (inputs follow the model's dtype: a float32 DataLoader feeds
    a bfloat16 or float64 model); integer tensors (token ids, labels) keep theirs."""
    if isinstance(x, Tensor):
        if dtype is not None and x.is_floating_point() and x.dtype != dtype:
            x = x.to(dtype)
        if x.device == device:
            return x
        if x.device.type == "cpu":
            return x.to(device)
        raise DataError(
            f"{where} is on {x.device} but the model is on {device}; move the model with model.to('{x.device}') "
            f"or keep the data on the CPU (the workbench moves CPU batches to the model's device)"
        )
    if isinstance(x, (list, tuple)):
        return type(x)(to_device(v, device, where, dtype) for v in x)
    if isinstance(x, dict):
        return {k: to_device(v, device, where, dtype) for k, v in x.items()}
    return x


def _split(batch: Any) -> tuple[Any, Tensor]:
    if isinstance(batch, dict):
        for xk, yk in (("x", "y"), ("input", "label"), ("inputs", "labels"), ("input", "target")):
            if xk in batch and yk in batch:
                return batch[xk], batch[yk]
    elif isinstance(batch, (list, tuple)) and len(batch) == 2:
        return batch[0], batch[1]
    raise DataError(
        "evaluation data must yield (inputs, labels) pairs, like a DataLoader over a TensorDataset; "
        f"got a batch of type {type(batch).__name__}"
    )


def call(model: nn.Module, x: Any) -> Tensor:
    return model(*x) if isinstance(x, (list, tuple)) else model(**x) if isinstance(x, dict) else model(x)


class Accumulator:
    """Running loss, accuracy and per-class hits over batches of model outputs and labels."""

    def __init__(self) -> None:
        self.loss = 0.0
        self.n = 0
        self.hits: Tensor | None = None
        self.counts: Tensor | None = None

    def add(self, out: Any, y: Tensor) -> None:
        if isinstance(out, (tuple, list)):
            out = out[0]
        if not y.is_floating_point() and out.dim() == 2:
            check_labels(y, out.shape[1])
            self.loss += F.cross_entropy(out.float(), y, reduction="sum").item()
            if self.hits is None:
                self.hits = torch.zeros(out.shape[1], dtype=torch.float64)
                self.counts = torch.zeros(out.shape[1], dtype=torch.float64)
            yc = y.cpu()
            self.counts.index_add_(0, yc, torch.ones_like(yc, dtype=torch.float64))
            self.hits.index_add_(0, yc, (out.argmax(1).cpu() == yc).double())
        else:
            self.loss += F.mse_loss(out.float(), y.float(), reduction="sum").item() / max(1, out[0].numel())
        self.n += y.shape[0]

    def result(self, metric: Metric) -> dict[str, Any]:
        if self.n == 0:
            raise DataError("evaluation data yielded no samples; pass a non-empty DataLoader of (inputs, labels)")
        result: dict[str, Any] = {"loss": self.loss / self.n, "n": self.n}
        if self.hits is not None:
            result["accuracy"] = float(self.hits.sum()) / self.n
            nan = torch.tensor(math.nan, dtype=torch.float64)
            result["per_class"] = torch.where(self.counts > 0, self.hits / self.counts.clamp(min=1), nan).tolist()
        if isinstance(metric, str):
            if metric == "accuracy" and "accuracy" not in result:
                raise DataError("metric 'accuracy' needs integer class labels and 2-D logits; use metric='loss' here")
            result["metric"], result["metric_name"] = result[metric], metric
        return result


def check_labels(y: Tensor, classes: int) -> None:
    """Class labels must index the model's `classes` outputs: a clear error instead of an IndexError deep inside."""
    if y.numel() == 0:
        return
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= classes:
        bad = hi if hi >= classes else lo
        raise DataError(
            f"a batch has class label {bad} but the model outputs {classes} classes (labels must be in "
            f"[0, {classes - 1}]); check the labels, or that the model's last layer has one output per class"
        )


def check_metric(metric: Any, *, warn: bool = False) -> None:
    if not (isinstance(metric, str) and metric in METRICS) and not callable(metric):
        raise DataError(f"metric must be one of {METRICS} or a callable (model, data) -> float, got {metric!r}")
    if warn and callable(metric) and not isinstance(metric, Metric):
        import warnings

        from .errors import WorkbenchWarning

        name = getattr(metric, "__name__", "metric")
        warnings.warn(
            f"metric {name!r} is taken as higher-is-better; if lower is better (an error or a loss), pass "
            f"metric=wb.Metric({name}, higher_is_better=False) so rankings and budgets point the right way",
            WorkbenchWarning,
            stacklevel=3,
        )


def batches(
    data: Iterable, device: torch.device | nn.Module, dtype: torch.dtype | None = None
) -> Iterable[tuple[Any, Tensor]]:
    """(inputs, labels) of each batch, moved to `device` (CPU batches only; see `to_device`); floating inputs are
    cast to `dtype` when given. Given the model instead of a device, batches follow its device and dtype."""
    if isinstance(device, nn.Module):
        device, dtype = model_device(device), model_dtype(device)
    for i, batch in enumerate(data):
        x, y = _split(batch)
        yield to_device(x, device, f"batch {i} inputs", dtype), to_device(y, device, f"batch {i} labels")


def evaluate(model: nn.Module, data: Iterable, metric: MetricLike = "accuracy") -> dict[str, Any]:
    """Evaluate `model` on `data` (batches of ``(x, y)``) in eval mode under `torch.inference_mode`.

    Returns ``{"metric": primary value, "metric_name": ..., "loss": mean loss, "n": samples}`` and, for
    classification (integer labels, 2-D logits), ``"accuracy"`` and ``"per_class"`` (accuracy per class,
    NaN for classes absent from the data). The loss is cross-entropy for classification, else MSE.
    A callable metric gets ``(model, data)`` in eval mode (with autograd available) and returns a float.
    """
    check_metric(metric)
    acc = Accumulator()
    with eval_mode(model), torch.inference_mode():
        for x, y in batches(data, model):
            acc.add(call(model, x), y)
    result = acc.result(metric)
    if callable(metric):
        with eval_mode(model):
            value = float(metric(model, data))
        result["metric"], result["metric_name"] = value, getattr(metric, "__name__", "metric")
    return result
