"""The `Adapter`: how to feed one model its batches and read its outputs (see `workbench.adapter`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import DataError
from .batches import FORMS, IGNORE, call, cat, logits_of, primary, size, split, take
from .tasks import TASKS, Task, task_of_model


class Adapter:
    """How to feed one model its batches and read its outputs (see the module docstring).

    `task`: one of `TASKS` (None: detected). `batch_fn`: ``batch -> (inputs, target)`` for batches of other forms.
    """

    def __init__(self, model: nn.Module, task: str | None = None, batch_fn: Callable[[Any], Any] | None = None):
        if task is not None and task not in TASKS:
            raise DataError(f"task must be one of {tuple(TASKS)}, got {task!r}")
        if batch_fn is not None and not callable(batch_fn):
            raise DataError(f"batch_fn must be a callable batch -> (inputs, target), got {type(batch_fn).__name__}")
        self.model = model
        self.batch_fn = batch_fn
        self._task = TASKS[task] if task is not None else None
        self._given = task is not None
        hf = task_of_model(model)
        if self._task is None and hf is not None:
            self._task = TASKS[hf]

    # batches -------------------------------------------------------------------------------------------------
    def split(self, batch: Any) -> tuple[Any, Tensor | None]:
        x, y = split(batch, self.batch_fn)
        if isinstance(x, Mapping) and y is not None and self.task_name == "seq2seq":
            x = self._decoder_inputs(x, y)
        return x, y

    def _decoder_inputs(self, x: Mapping, y: Tensor) -> dict:
        """Seq2seq models build their decoder inputs from the labels when given labels; the labels are the target
        here, so the decoder inputs are built the model's own way."""
        if "decoder_input_ids" in x or "decoder_inputs_embeds" in x:
            return dict(x)
        prepare = getattr(self.model, "prepare_decoder_input_ids_from_labels", None)
        if prepare is not None:
            return {**x, "decoder_input_ids": prepare(labels=y)}
        cfg = getattr(self.model, "config", None)
        start = getattr(cfg, "decoder_start_token_id", None)
        if start is None:
            raise DataError(
                "a seq2seq batch needs decoder_input_ids, a model with prepare_decoder_input_ids_from_labels, or a "
                "config with decoder_start_token_id (the labels shifted right start with it)"
            )
        pad = getattr(cfg, "pad_token_id", None)
        shifted = y.new_full(y.shape, int(start))  # the labels shifted right, as Hugging Face's shift_tokens_right
        shifted[:, 1:] = y[:, :-1]
        return {**x, "decoder_input_ids": shifted.masked_fill(shifted == -100, int(pad if pad is not None else 0))}

    def batches(self, data: Iterable, model: nn.Module | None = None) -> Iterator[tuple[Any, Tensor | None]]:
        """``(inputs, target)`` of every batch of `data`, moved to the model's device (floating inputs in its
        dtype; ids and targets keep theirs)."""
        from ..evaluate import model_device, model_dtype, to_device

        m = self.model if model is None else model
        device, dtype = model_device(m), model_dtype(m)
        for i, batch in enumerate(data):
            x, y = self.split(batch)
            yield to_device(x, device, f"batch {i} inputs", dtype), to_device(y, device, f"batch {i} labels")

    def example(self, data: Iterable, n: int = 2) -> Any:
        """The inputs of the first `n` samples of `data` (for tracing), on the model's device and dtype."""
        for x, _ in self.batches(data):
            return take(x, n)
        raise DataError(f"the data yielded no batches; pass a non-empty DataLoader. Accepted forms: {FORMS}")

    def rows(self, data: Iterable, n: int, model: nn.Module | None = None) -> Any:
        """Inputs of exactly `n` samples: the first batches of `data` concatenated, repeated when it holds fewer
        (for timing and FLOP counts at a given batch size), on the model's device and dtype."""
        parts, have = [], 0
        for x, _ in self.batches(data, model):
            parts.append(x)
            have += size(x)
            if have >= n:
                break
        if not parts:
            raise DataError(f"the data yielded no batches; pass a non-empty DataLoader. Accepted forms: {FORMS}")
        x = cat(parts) if len(parts) > 1 else parts[0]
        if have < n:
            x = cat([x] * -(-n // have))
        return take(x, n)

    def detect(self, data: Iterable) -> Task:
        """The task, detected (when not given) from one forward pass on two samples of the first batch."""
        if self._task is not None:
            return self._task
        from ..evaluate import eval_mode

        for x, y in self.batches(data):
            x2, y2 = take(x, 2), None if y is None else y[:2]
            with eval_mode(self.model), torch.inference_mode():
                return self.task_for(self.call(x2), x2, y2)
        raise DataError(f"the data yielded no batches; pass a non-empty DataLoader. Accepted forms: {FORMS}")

    # outputs -------------------------------------------------------------------------------------------------
    def call(self, x: Any, model: nn.Module | None = None) -> Any:
        return call(self.model if model is None else model, x)

    def logits(self, x: Any, model: nn.Module | None = None) -> Tensor:
        return logits_of(self.call(x, model))

    @property
    def task(self) -> Task | None:
        """The task, once given, named by the model class or detected (None before the first batch)."""
        return self._task

    @property
    def task_name(self) -> str | None:
        return None if self._task is None else self._task.name

    def task_for(self, out: Any, x: Any, y: Tensor | None) -> Task:
        """The task (detected on the first batch when not given or named by the model class)."""
        if self._task is None:
            self._task = TASKS[self._detect(logits_of(out), x, y)]
        return self._task

    def _detect(self, logits: Tensor, x: Any, y: Tensor | None) -> str:
        ids = primary(x)
        if y is None:
            if ids is not None and not ids.is_floating_point() and logits.dim() == 3:
                return "causal-lm"
            raise DataError(
                "the batches have no labels, and the model's outputs are not next-token logits over its input ids; "
                f"pass labelled batches ({FORMS}) or task='causal-lm'"
            )
        if y.is_floating_point():
            return "regression"
        if logits.dim() == 3 and y.dim() == 2:
            if ids is not None and ids.shape == y.shape and torch.equal(ids[y != IGNORE], y[y != IGNORE]):
                return "causal-lm"  # the labels are the inputs: predict the next token
            return "token-classification"
        return "classification"

    def target(self, task: Task, x: Any, y: Tensor | None) -> Tensor:
        """The target of a batch: its labels, or for language modelling the input ids (padding ignored)."""
        if y is not None:
            return y
        if task.name == "causal-lm":
            ids = primary(x)
            mask = x.get("attention_mask") if isinstance(x, Mapping) else None
            return ids if mask is None else ids.masked_fill(mask == 0, IGNORE)
        raise DataError(f"task {task.name!r} needs labels in every batch; accepted forms: {FORMS}")

    def loss(self, out: Any, x: Any, y: Tensor | None) -> tuple[Tensor, int]:
        """``(summed loss, count)`` of one batch's output (differentiable)."""
        task = self.task_for(out, x, y)
        return task.loss_sum(logits_of(out), self.target(task, x, y))

    def mean_loss(self, out: Any, x: Any, y: Tensor | None) -> Tensor:
        total, count = self.loss(out, x, y)
        return total / max(count, 1)

    def accumulator(self) -> Accumulator:
        return Accumulator(self)


class Accumulator:
    """Running loss, hits and counts over batches of model outputs; `result` gives every metric of the task."""

    def __init__(self, adapter: Adapter) -> None:
        self.adapter = adapter
        self.loss = 0.0
        self.count = 0
        self.n = 0
        self.correct = 0
        self.task: Task | None = None
        self.per_hits: Tensor | None = None
        self.per_counts: Tensor | None = None

    def add(self, out: Any, x: Any, y: Tensor | None) -> None:
        task = self.task = self.adapter.task_for(out, x, y)
        logits, target = logits_of(out), self.adapter.target(task, x, y)
        with torch.no_grad():
            total, count = task.loss_sum(logits.detach(), target)
            self.loss += float(total)
            self.count += count
            self.n += size(x)
            if task.name == "regression":
                return
            t, hit = task.hits(logits.detach(), target)
            self.correct += int(hit.sum())
            if task.name == "classification":
                c = logits.shape[-1]
                if self.per_hits is None:
                    self.per_hits = torch.zeros(c, dtype=torch.float64)
                    self.per_counts = torch.zeros(c, dtype=torch.float64)
                tc = t.cpu()
                self.per_counts.index_add_(0, tc, torch.ones_like(tc, dtype=torch.float64))
                self.per_hits.index_add_(0, tc, hit.cpu().double())

    def result(self, metric: Any) -> dict[str, Any]:
        if self.n == 0 or self.task is None:
            raise DataError(f"the data yielded no samples; pass a non-empty DataLoader. Accepted forms: {FORMS}")
        if self.count == 0:
            raise DataError("every target of the data is ignored (-100): nothing to measure")
        task = self.task
        mean = self.loss / self.count
        result: dict[str, Any] = {"loss": mean, "n": self.n, "task": task.name}
        if task.token:
            result["tokens"] = self.count
            result["perplexity"] = math.exp(min(mean, 700.0))
        if task.name != "regression":
            result["accuracy"] = self.correct / self.count
        if self.per_hits is not None:
            nan = torch.tensor(math.nan, dtype=torch.float64)
            result["per_class"] = torch.where(
                self.per_counts > 0, self.per_hits / self.per_counts.clamp(min=1), nan
            ).tolist()
        if metric is None:
            metric = task.metrics[0]
        if isinstance(metric, str):
            if metric not in result:
                raise DataError(
                    f"metric {metric!r} is not measured for task {task.name!r}; its metrics are {task.metrics}"
                )
            result["metric"], result["metric_name"] = result[metric], metric
        return result
