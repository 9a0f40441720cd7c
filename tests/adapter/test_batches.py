"""Batches and outputs in every accepted form (workbench/adapter/batches.py): split, call, logits_of, and the
sample slicing that evaluation, scans and calibration rely on (take / repeat / cat / size)."""

from collections import namedtuple
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from workbench.adapter import call, cat, logits_of, primary, repeat, size, split, take
from workbench.errors import DataError

X = torch.arange(24.0).reshape(6, 4)
Y = torch.tensor([0, 1, 2, 0, 1, 2])
IDS = torch.arange(30).reshape(6, 5)
HF = {"input_ids": IDS, "attention_mask": torch.ones(6, 5), "use_cache": False}


@pytest.mark.parametrize(
    ("batch", "inputs", "target"),
    [
        ((X, Y), X, Y),
        ([X, Y], X, Y),
        ((X,), X, None),
        (X, X, None),
        ({"x": X, "y": Y}, X, Y),
        ({"inputs": X, "labels": Y}, X, Y),
        ({"input": X, "target": Y}, X, Y),
        ({"pixel_values": X, "labels": Y}, {"pixel_values": X}, Y),
        ({"input_ids": IDS, "label": Y}, {"input_ids": IDS}, Y),
        ({"input_ids": IDS}, {"input_ids": IDS}, None),
    ],
)
def test_split_reads_every_accepted_form(batch, inputs, target):
    x, y = split(batch)
    if isinstance(inputs, dict):
        assert x.keys() == inputs.keys() and all(x[k] is inputs[k] for k in inputs)
    else:
        assert x is inputs
    assert y is target


def test_split_through_batch_fn_and_what_it_refuses():
    assert split({"a": X, "b": Y}, batch_fn=lambda b: (b["a"], b["b"]))[1] is Y
    with pytest.raises(DataError, match="batch_fn must return"):
        split(X, batch_fn=lambda b: b)
    with pytest.raises(DataError, match="batch_fn raised KeyError"):
        split({}, batch_fn=lambda b: b["missing"])
    with pytest.raises(DataError, match="no inputs besides its labels"):
        split({"labels": Y})
    with pytest.raises(DataError, match="cannot read a batch of type int"):
        split(3)


def test_call_passes_dicts_as_keywords_and_tuples_as_positions():
    class Two(nn.Module):
        def forward(self, a, b=None):
            return a if b is None else a + b

    m = Two()
    assert torch.equal(call(m, X), X)
    assert torch.equal(call(m, (X, X)), 2 * X)
    assert torch.equal(call(m, {"a": X, "b": X}), 2 * X)


def test_logits_of_finds_the_predictions_in_every_output_form():
    @dataclass
    class Out:
        loss: torch.Tensor
        scores: torch.Tensor

    Named = namedtuple("Named", "logits hidden")
    holder = type("Holder", (), {"logits": X})()
    for out in (X, (X, Y), [X], {"logits": X, "loss": Y}, {"loss": torch.tensor(1.0), "y": X}, holder):
        assert logits_of(out) is X
    assert logits_of(Out(torch.tensor(0.5), X)) is X  # a dataclass: its first tensor with a batch dimension
    assert logits_of(Named(X, Y)) is X
    with pytest.raises(DataError, match="cannot find the predictions"):
        logits_of("text")


@pytest.mark.parametrize("inputs", [X, (X, torch.ones(6, 2)), HF], ids=["tensor", "tuple", "dict"])
def test_take_and_cat_are_inverse_and_repeat_keeps_rows_in_order(inputs):
    n = size(inputs)
    assert n == 6
    parts = [take(inputs, 2, start) for start in (0, 2, 4)]
    assert all(size(p) == 2 for p in parts)
    whole = cat(parts)
    flat = lambda v: list(v.values()) if isinstance(v, dict) else (list(v) if isinstance(v, tuple) else [v])  # noqa: E731
    for a, b in zip(flat(whole), flat(inputs), strict=True):
        assert torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b
    more = repeat(inputs, 9)
    assert size(more) == 9 and torch.equal(primary(more), primary(inputs)[torch.arange(9) % 6])
    if isinstance(inputs, dict):
        assert more["use_cache"] is False and take(inputs, 2)["use_cache"] is False  # flags are kept as they are


def test_primary_prefers_the_keys_that_count_samples():
    assert primary({"attention_mask": torch.ones(6, 5), "input_ids": IDS}) is IDS
    assert primary({"flag": True, "features": X}) is X
    assert primary((torch.tensor(1.0), X)) is X
    assert primary({"flag": True}) is None and size({"flag": True}) == 1
