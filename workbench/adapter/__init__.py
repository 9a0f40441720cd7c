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

from .batches import FORMS, IGNORE, LABEL_KEYS, PRIMARY_KEYS, call, cat, logits_of, primary, repeat, size, split, take
from .core import Accumulator, Adapter
from .tasks import TASKS, Task, check_labels, task_of_model

__all__ = [
    "FORMS",
    "IGNORE",
    "LABEL_KEYS",
    "PRIMARY_KEYS",
    "TASKS",
    "Accumulator",
    "Adapter",
    "Task",
    "call",
    "cat",
    "check_labels",
    "logits_of",
    "primary",
    "repeat",
    "size",
    "split",
    "take",
    "task_of_model",
]
