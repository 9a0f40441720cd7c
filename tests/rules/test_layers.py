"""rules/_layers.py: Hugging Face's transposed Conv1D is told apart from look-alikes, and linear_dims names the
output and input dimensions of its weight as of an nn.Linear's, so a slice along them is the same unit."""

import pytest
import torch
from torch import nn

from workbench.rules._layers import _child, _join, _linear, is_conv1d, linear_dims

T = pytest.importorskip("transformers")


def test_conv1d_is_a_linear_with_its_weight_transposed():
    torch.manual_seed(0)
    conv = T.pytorch_utils.Conv1D(5, 3)  # nf=5 outputs, nx=3 inputs: weight (3, 5)
    lin = nn.Linear(3, 5)
    with torch.no_grad():
        lin.weight.copy_(conv.weight.t())
        lin.bias.copy_(conv.bias)
    assert is_conv1d(conv) and not is_conv1d(lin) and _linear(conv) and _linear(lin) and not _linear(None)
    assert linear_dims(conv) == (1, 0, 5, 3) and linear_dims(lin) == (0, 1, 5, 3)
    x = torch.randn(2, 3)
    out_c, in_c, _, _ = linear_dims(conv)
    out_l, in_l, _, _ = linear_dims(lin)
    with torch.no_grad():  # output unit 2 and input feature 1, zeroed along the dims linear_dims names
        conv.weight.index_fill_(out_c, torch.tensor([2]), 0.0)
        conv.weight.index_fill_(in_c, torch.tensor([1]), 0.0)
        lin.weight.index_fill_(out_l, torch.tensor([2]), 0.0)
        lin.weight.index_fill_(in_l, torch.tensor([1]), 0.0)
        torch.testing.assert_close(conv(x), lin(x))


def test_look_alikes_are_not_conv1d():
    class Conv1D(nn.Module):  # the name alone is not enough: no nf, a 3-D weight
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.zeros(2, 3, 4))

    assert not is_conv1d(Conv1D()) and not is_conv1d(nn.Conv1d(2, 3, 1))


def test_child_and_join():
    model = nn.Sequential(nn.Sequential(nn.Linear(2, 2)))
    assert _child(model, "0.0") is model[0][0] and _child(model, "0.1") is None and _child(model, "") is model
    assert _join("", "fc") == "fc" and _join("block.0", "fc") == "block.0.fc"
