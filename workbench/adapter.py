"""One way to call the user's model: their batches, their outputs, their task.

Everything that runs the model (evaluate, sensitivity scans and estimates, activations, attributions, attacks,
training, compile checks, export, compare, recommend, monitor, the dashboard) goes through an `Adapter`, so a new
form of batch or task is one change here.

**Batches** (`split`): ``(inputs, target)`` pairs (a DataLoader over a TensorDataset; inputs a tensor, a tuple of
positional tensors or a dict of keyword tensors); Hugging Face dicts (``input_ids`` / ``attention_mask`` /
``token_type_ids`` / ``pixel_values`` / ``input_values`` / ``input_features`` / ``decoder_input_ids`` ... with
``labels`` or ``label``: every key but the labels goes to the model as a keyword argument); the dict forms
``{"x", "y"}``, ``{"input", "label"}``, ``{"inputs", "labels"}``, ``{"input", "target"}``; or anything, through a
user function ``batch_fn(batch) -> (inputs, target)``. A batch without labels is fine for language modelling (the
input ids are the labels).

**Outputs** (`logits_of`): a tensor, a tuple or list (its first element), a dict or Hugging Face ``ModelOutput``
(``logits``, else its first tensor), or any object with a ``logits`` attribute.

**Tasks** (`TASKS`, one entry each, carrying its loss and metrics):

================  ================================================  ==========================================
task              outputs vs target                                 metrics (first: the default)
================  ================================================  ==========================================
classification    (B, C) logits, (B,) class ids                     accuracy, loss (cross-entropy), per class
regression        any float output, float target of its shape       loss (mean squared error)
causal-lm         (B, T, V) logits, (B, T) ids, shifted by one      perplexity, accuracy (next token), loss
masked-lm         (B, T, V) logits, (B, T) ids, -100 ignored        perplexity, accuracy (token), loss
seq2seq           (B, T, V) decoder logits, (B, T) target ids       perplexity, accuracy (token), loss
================  ================================================  ==========================================

Token tasks ignore targets of -100 (padding, unmasked positions). The task is detected from the model (a Hugging
Face ``...ForCausalLM`` / ``...ForMaskedLM`` / ``...ForConditionalGeneration`` / ``...ForSequenceClassification``
class) or else from the first batch (class ids vs floats; token ids equal to the inputs: causal LM), and can be given
(``task=``).

>>> import torch
>>> ad = Adapter(torch.nn.Linear(4, 3))
>>> x, y = ad.split((torch.randn(2, 4), torch.tensor([0, 2])))
>>> ad.task_for(ad.call(x), x, y).name
'classification'
>>> x, y = ad.split({"input_ids": torch.ones(2, 5, dtype=torch.long), "attention_mask": torch.ones(2, 5), "labels": None})
>>> sorted(x), y is None
(['attention_mask', 'input_ids'], True)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import DataError

__all__ = ["TASKS", "Adapter", "Task", "call", "logits_of", "split"]

IGNORE = -100
LABEL_KEYS = ("labels", "label")
# the keyword inputs that carry a batch's samples along dim 0 in Hugging Face models, in order of preference
PRIMARY_KEYS = ("input_ids", "pixel_values", "input_values", "input_features", "inputs_embeds", "x", "input")
_PAIRS = (("x", "y"), ("input", "label"), ("inputs", "labels"), ("input", "target"))
FORMS = (
    "(inputs, target) pairs (a DataLoader over a TensorDataset; inputs a tensor, a tuple, or a dict of keyword "
    "inputs); Hugging Face dicts such as {'input_ids', 'attention_mask', 'labels'} or {'pixel_values', 'labels'}; "
    "{'x', 'y'} / {'inputs', 'labels'} dicts; or any batch through batch_fn=lambda batch: (inputs, target)"
)


def split(batch: Any, batch_fn: Callable[[Any], tuple[Any, Any]] | None = None) -> tuple[Any, Tensor | None]:
    """``(inputs, target)`` of one batch in any accepted form (see the module docstring); target None: unlabelled."""
    if batch_fn is not None:
        try:
            out = batch_fn(batch)
        except Exception as e:
            raise DataError(f"batch_fn raised {type(e).__name__}: {e}") from e
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            raise DataError(f"batch_fn must return (inputs, target), got {type(out).__name__}")
        return out[0], out[1]
    if isinstance(batch, Mapping):
        for xk, yk in _PAIRS:
            if xk in batch and yk in batch and len(batch) == 2:
                return batch[xk], batch[yk]
        keys = [k for k in batch if k not in LABEL_KEYS]
        if not keys:
            raise DataError(f"a batch dict has no inputs besides its labels (keys {list(batch)}); accepted: {FORMS}")
        target = next((batch[k] for k in LABEL_KEYS if k in batch), None)
        return {k: batch[k] for k in keys}, target
    if isinstance(batch, (list, tuple)) and len(batch) == 2:
        return batch[0], batch[1]
    if isinstance(batch, (list, tuple)) and len(batch) == 1:
        return batch[0], None
    if isinstance(batch, Tensor):
        return batch, None
    raise DataError(f"cannot read a batch of type {type(batch).__name__}; accepted: {FORMS}")


def call(model: nn.Module, x: Any) -> Any:
    """Run `model` on inputs `x`: a dict goes as keyword arguments, a tuple/list as positional ones."""
    if isinstance(x, Mapping):
        return model(**x)
    if isinstance(x, (list, tuple)):
        return model(*x)
    return model(x)


def logits_of(out: Any) -> Tensor:
    """The prediction tensor of a model output (see the module docstring)."""
    if isinstance(out, Tensor):
        return out
    if isinstance(out, Mapping):
        if "logits" in out and isinstance(out["logits"], Tensor):
            return out["logits"]
        for v in out.values():
            if isinstance(v, Tensor) and v.dim() > 0:
                return v
    elif isinstance(out, (list, tuple)) and out:
        return logits_of(out[0])
    else:
        value = getattr(out, "logits", None)
        if isinstance(value, Tensor):
            return value
        if dataclasses.is_dataclass(out):
            for f in dataclasses.fields(out):
                v = getattr(out, f.name)
                if isinstance(v, Tensor) and v.dim() > 0:
                    return v
    raise DataError(
        f"cannot find the predictions in a model output of type {type(out).__name__}: accepted are a tensor, a tuple "
        "(its first element), a dict or ModelOutput with 'logits', or an object with a .logits tensor"
    )


def primary(x: Any) -> Tensor | None:
    """The input tensor whose first dimension counts the batch's samples (None if there is none)."""
    if isinstance(x, Tensor):
        return x
    if isinstance(x, Mapping):
        for k in PRIMARY_KEYS:
            if isinstance(x.get(k), Tensor):
                return x[k]
        return next((v for v in x.values() if isinstance(v, Tensor) and v.dim() > 0), None)
    if isinstance(x, (list, tuple)):
        return next((v for v in x if isinstance(v, Tensor) and v.dim() > 0), None)
    return None


def size(x: Any) -> int:
    """Samples in inputs `x` (the first dimension of its primary tensor)."""
    p = primary(x)
    return int(p.shape[0]) if p is not None and p.dim() else 1


def take(x: Any, n: int, start: int = 0) -> Any:
    """Samples ``start .. start + n`` of inputs `x` (every tensor with the batch's first dimension is sliced)."""
    b = size(x)

    def cut(v: Any) -> Any:
        if isinstance(v, Tensor) and v.dim() and v.shape[0] == b:
            return v[start : start + n]
        return v

    if isinstance(x, Mapping):
        return {k: cut(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(cut(v) for v in x)
    return cut(x)


def repeat(x: Any, n: int) -> Any:
    """`n` samples of inputs `x`, its rows repeated where it has fewer (tensors without the batch's first dimension,
    flags and scalars are kept)."""
    b = size(x)
    idx = torch.arange(n) % b

    def rows(v: Any) -> Any:
        if isinstance(v, Tensor) and v.dim() and v.shape[0] == b:
            return v[idx.to(v.device)]
        return v

    if isinstance(x, Mapping):
        return {k: rows(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(rows(v) for v in x)
    return rows(x)


def cat(parts: list[Any]) -> Any:
    """Inputs of several batches concatenated along the samples (the inverse of `take`)."""
    first = parts[0]
    if isinstance(first, Tensor):
        return torch.cat(parts)
    if isinstance(first, Mapping):
        return {k: torch.cat([p[k] for p in parts]) if isinstance(first[k], Tensor) else first[k] for k in first}
    return type(first)(torch.cat([p[i] for p in parts]) for i in range(len(first)))


# tasks ------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Task:
    """One kind of prediction: how a batch's loss, hits and counts are computed, and its metrics (the first one is
    the default). `token` tasks count tokens, the others samples."""

    name: str
    metrics: tuple[str, ...]
    token: bool = False
    shift: bool = False

    def pairs(self, logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """Predictions and targets flattened to what the loss compares."""
        if not self.token:
            return logits, target
        if logits.dim() != 3 or target.dim() != 2:
            raise DataError(
                f"task {self.name!r} needs (batch, tokens, vocabulary) logits and (batch, tokens) target ids, got "
                f"{tuple(logits.shape)} and {tuple(target.shape)}; pass task= for another task"
            )
        if self.shift:
            logits, target = logits[:, :-1], target[:, 1:]
        return logits.reshape(-1, logits.shape[-1]), target.reshape(-1)

    def loss_sum(self, logits: Tensor, target: Tensor, *, check: bool = True) -> tuple[Tensor, int]:
        """``(summed loss, count)``: cross-entropy over samples or non-ignored tokens, or squared error per sample.
        ``check=False`` skips the label range check and the token count (both read values: not under vmap)."""
        if self.name == "regression":
            out, t = logits.float(), target.float()
            if out.shape != t.shape and out.numel() == t.numel():
                out = out.reshape(t.shape)
            n = int(t.shape[0]) if t.dim() else 1
            return F.mse_loss(out, t, reduction="none").reshape(n, -1).mean(1).sum(), n
        z, t = self.pairs(logits, target)
        if not check:
            return F.cross_entropy(z.float(), t, reduction="sum", ignore_index=IGNORE), int(t.shape[0])
        check_labels(t, z.shape[-1], ignore=self.token)
        count = int((t != IGNORE).sum()) if self.token else int(t.shape[0])
        return F.cross_entropy(z.float(), t, reduction="sum", ignore_index=IGNORE), count

    def hits(self, logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """Per counted sample/token: its target and whether the top prediction is right."""
        z, t = self.pairs(logits, target)
        keep = t != IGNORE
        return t[keep], (z.argmax(-1)[keep] == t[keep])


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task("classification", ("accuracy", "loss")),
        Task("regression", ("loss",)),
        Task("causal-lm", ("perplexity", "accuracy", "loss"), token=True, shift=True),
        Task("masked-lm", ("perplexity", "accuracy", "loss"), token=True),
        Task("seq2seq", ("perplexity", "accuracy", "loss"), token=True),
        Task("token-classification", ("accuracy", "loss"), token=True),
    )
}
_HF_SUFFIXES = (
    ("ForCausalLM", "causal-lm"),
    ("LMHeadModel", "causal-lm"),
    ("ForMaskedLM", "masked-lm"),
    ("ForConditionalGeneration", "seq2seq"),
    ("ForSeq2SeqLM", "seq2seq"),
    ("ForTokenClassification", "token-classification"),
    ("ForSequenceClassification", "classification"),
    ("ForImageClassification", "classification"),
    ("ForAudioClassification", "classification"),
    ("ForMultipleChoice", "classification"),
)


def check_labels(y: Tensor, classes: int, *, ignore: bool = False) -> None:
    """Class labels must index the model's `classes` outputs: a clear error instead of an IndexError deep inside."""
    if y.is_floating_point():
        raise DataError(f"class labels must be integers, got {y.dtype}; for float targets pass task='regression'")
    kept = y[y != IGNORE] if ignore else y
    if kept.numel() == 0:
        return
    lo, hi = int(kept.min()), int(kept.max())
    if lo < 0 or hi >= classes:
        bad = hi if hi >= classes else lo
        raise DataError(
            f"a batch has class label {bad} but the model outputs {classes} classes (labels must be in "
            f"[0, {classes - 1}]{', or -100 to ignore' if ignore else ''}); check the labels, or that the model's last "
            "layer has one output per class"
        )


def task_of_model(model: nn.Module) -> str | None:
    """The task a Hugging Face model class names (``BertForSequenceClassification``: classification), else None."""
    cls = type(model).__name__
    for suffix, task in _HF_SUFFIXES:
        if cls.endswith(suffix):
            if task == "classification":
                cfg = getattr(model, "config", None)
                if getattr(cfg, "problem_type", None) == "regression" or getattr(cfg, "num_labels", 2) == 1:
                    return "regression"
            return task
    return None


# the adapter ------------------------------------------------------------------------------------------------------
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
        from .evaluate import model_device, model_dtype, to_device

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
        from .evaluate import eval_mode

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
