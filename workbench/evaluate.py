"""Evaluating the live model: a metric, the loss and per-class accuracy, leaving the model as it was."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from .adapter import Accumulator, Adapter, call, split
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


MetricLike = str | Metric | Callable[[nn.Module, Any], float] | None
METRICS = ("accuracy", "loss", "perplexity")
LOWER_IS_BETTER = ("loss", "perplexity")


def higher_is_better(metric: MetricLike) -> bool:
    """The direction of `metric`: ``"loss"`` and ``"perplexity"`` are lower-is-better, ``"accuracy"`` higher; a
    `Metric` says; a plain callable is taken as higher-is-better (wrap it in `Metric` to say otherwise)."""
    if isinstance(metric, str):
        return metric not in LOWER_IS_BETTER
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


def check_metric(metric: Any, *, warn: bool = False) -> None:
    if metric is None:
        return
    if not (isinstance(metric, str) and metric in METRICS) and not callable(metric):
        raise DataError(
            f"metric must be one of {METRICS}, None (the task's default) or a callable (model, data) -> float, got {metric!r}"
        )
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
    data: Iterable, device: torch.device | nn.Module, dtype: torch.dtype | None = None, adapter: Any = None
) -> Iterable[tuple[Any, Tensor | None]]:
    """(inputs, target) of each batch (any form `workbench.adapter.split` reads; with the bench's `adapter`, as it
    splits them: seq2seq decoder inputs from the labels, a user's batch_fn), moved to `device` (CPU batches only;
    see `to_device`); floating inputs are cast to `dtype` when given. Given the model instead of a device, batches
    follow its device and dtype."""
    if isinstance(device, nn.Module):
        device, dtype = model_device(device), model_dtype(device)
    for i, batch in enumerate(data):
        x, y = adapter.split(batch) if adapter is not None else split(batch)
        yield to_device(x, device, f"batch {i} inputs", dtype), to_device(y, device, f"batch {i} labels")


def evaluate(
    model: nn.Module,
    data: Iterable,
    metric: MetricLike | None = None,
    *,
    task: str | None = None,
    batch_fn: Callable[[Any], Any] | None = None,
    adapter: Adapter | None = None,
) -> dict[str, Any]:
    """Evaluate `model` on `data` in eval mode under `torch.inference_mode`, leaving the model as it was.

    `data`: batches in any form the adapter reads (`workbench.adapter`: ``(x, y)`` pairs, Hugging Face dicts, or
    ``batch_fn``). Returns ``{"metric": primary value, "metric_name", "loss", "n" (samples), "task"}`` and per task:
    ``"accuracy"`` and ``"per_class"`` (classification; NaN for classes absent from the data), ``"accuracy"``,
    ``"perplexity"`` and ``"tokens"`` (language models). `metric` None is the task's default (accuracy,
    perplexity, or the loss for regression). A callable metric gets ``(model, data)`` in eval mode (with autograd
    available) and returns a float.
    """
    check_metric(metric)
    adapter = adapter or Adapter(model, task, batch_fn)
    acc = adapter.accumulator()
    with eval_mode(model), torch.inference_mode():
        for x, y in adapter.batches(data, model):
            acc.add(adapter.call(x, model), x, y)
    result = acc.result(None if callable(metric) else metric)
    if callable(metric):
        with eval_mode(model):
            value = float(metric(model, data))
        result["metric"], result["metric_name"] = value, getattr(metric, "__name__", "metric")
    return result


_split = split  # the adapter's batch reader, under the name the older modules import
__all__ += ["Accumulator", "call"]
