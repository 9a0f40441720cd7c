"""sparse/_inputs.py: the rows compile runs a model on (real rows from the data where there are enough, else the
example repeated, exactly n), inputs cast to the device and dtype with ids kept, outputs compared as tensors, and each
first input of every Linear/Conv2d captured with no hook left."""

import math

import pytest
import torch
from conftest import assert_plain
from torch import nn

from workbench.sparse import CompileError
from workbench.sparse._inputs import _as_inputs, _batch, _capture, _cast, _close, _map, _out


def test_inputs_are_a_tuple_of_tensors_or_a_dict_of_keywords():
    x = torch.zeros(2, 3)
    assert _as_inputs(x, "x")[0] is x and len(_as_inputs([x, x], "x")) == 2
    d = _as_inputs({"input_ids": x.long(), "flag": True}, "x")
    assert set(d) == {"input_ids", "flag"}
    for bad in ([], {"flag": True}, 3, [x, 1]):
        with pytest.raises(CompileError, match=r"example_inputs must be a tensor, a tuple of tensors .*got"):
            _as_inputs(bad, "example_inputs")
    assert _map({"a": x, "b": 1}, lambda t: t + 1)["b"] == 1 and _map((x, "s"), lambda t: t + 1)[1] == "s"


@pytest.mark.parametrize("n", [1, 5, 8, 13])
def test_n_rows_come_from_the_data_in_order_else_from_the_example(n):
    data = [(torch.arange(4.0)[:, None] + 10 * i, torch.zeros(4)) for i in range(2)]  # 8 real rows
    rows = _batch(torch.full((2, 1), -1.0), data, n)[0]
    assert rows.shape == (n, 1)
    real = torch.tensor([0.0, 1, 2, 3, 10, 11, 12, 13])
    assert torch.equal(rows[: min(n, 8), 0], real[: min(n, 8)])  # real rows first, then repeated
    example_only = _batch(torch.full((2, 1), -1.0), None, n)[0]
    assert example_only.shape == (n, 1) and (example_only == -1).all()
    assert _batch(None, None, n) is None


def test_batches_of_other_lengths_fall_back_to_the_first():
    data = [(torch.zeros(2, 5), None), (torch.ones(2, 7), None)]  # sequences of different lengths cannot cat
    rows = _batch(None, data, 4)[0]
    assert rows.shape == (4, 5) and (rows == 0).all()


def test_cast_moves_floats_to_the_dtype_and_keeps_integer_ids():
    xs = {"ids": torch.arange(3), "feats": torch.zeros(3, dtype=torch.float32), "flag": None}
    out = _cast(xs, torch.device("cpu"), torch.float16)
    assert out["ids"].dtype == torch.int64 and out["feats"].dtype == torch.float16 and out["flag"] is None
    assert _cast((torch.zeros(1),), torch.device("cpu"), None)[0].dtype == torch.float32


def test_outputs_compare_as_tensors_with_their_largest_error():
    a = torch.tensor([1.0, 2.0, 3.0])
    ok, err = _close(a, a + 1e-7, 1e-5, 1e-5)
    assert ok and err == pytest.approx(1e-7, abs=1e-7)
    ok, err = _close(a, a + torch.tensor([0.0, 0.5, 0.0]), 1e-5, 1e-5)
    assert not ok and err == pytest.approx(0.5)
    assert _close(a, a[:2], 1, 1) == (False, math.inf)
    assert torch.equal(_out((a, a[:1])), torch.tensor([1.0, 2.0, 3.0, 1.0]))
    assert _out({"logits": a}) is a
    with pytest.raises(CompileError, match="must be a tensor, a tuple of tensors, or a dict/ModelOutput"):
        _out("text")


def test_capture_sees_the_first_input_of_every_linear_and_conv_and_leaves_no_hook():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    x = torch.randn(2, 1, 6, 6)
    seen = _capture(model, (x,))
    assert set(seen) == {"0", "2"} and torch.equal(seen["0"], x)
    with torch.no_grad():
        assert torch.equal(seen["2"], model[1](model[0](x)))
    assert_plain(model)
