"""Tasks: how a batch's loss, hits and counts are computed, and their metrics (see `workbench.adapter`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import DataError
from .batches import IGNORE


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
