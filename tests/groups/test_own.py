"""groups/own.py: heads of nn.MultiheadAttention and hidden units of LSTM/GRU/RNN as groups of our own, exact by
construction: a pruned head's q/k/v rows change nothing once its output-projection columns are zero, and a pruned
recurrent unit's hidden state is exactly zero at every step (its gates' rows zero, from a zero state)."""

import pytest
import torch
from torch import nn

from workbench.groups.own import _head_groups, _rnn_groups


def _apply(model: nn.Module, masks: dict) -> None:
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, mask in masks.items():
            params[name][mask] = 0


@pytest.mark.parametrize("kdim", [None, 6], ids=["packed", "separate-kv"])
@pytest.mark.parametrize("head", [0, 2])
def test_a_pruned_heads_projections_add_nothing_to_zeroing_its_output_columns(kdim, head):
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(8, 4, kdim=kdim, vdim=kdim, bias=True, add_bias_kv=kdim is None, batch_first=True)
    (g,) = _head_groups("attn", mha)
    assert g.size == 4 and g.unit == "head" and g.supported
    prefixed = {f"attn.{n}": p.shape for n, p in mha.named_parameters()}
    pruned = torch.zeros(4, dtype=torch.bool)
    pruned[head] = True
    masks = {k[5:]: v for k, v in g.masks(pruned, prefixed).items()}
    q, k = torch.randn(2, 5, 8), torch.randn(2, 5, kdim or 8)
    only_out = {"out_proj.weight": masks["out_proj.weight"]}
    full, part = [
        torch.nn.MultiheadAttention(8, 4, kdim=kdim, vdim=kdim, add_bias_kv=kdim is None, batch_first=True)
        for _ in range(2)
    ]
    for m, msk in ((full, masks), (part, only_out)):
        m.load_state_dict(mha.state_dict())
        _apply(m, msk)
    with torch.no_grad():
        torch.testing.assert_close(full(q, k, k)[0], part(q, k, k)[0], rtol=1e-5, atol=1e-6)
    assert int(masks["out_proj.weight"].sum()) == 8 * 2  # 8 output rows x the head's 2 columns


def test_a_single_head_cannot_be_pruned_and_says_why():
    (g,) = _head_groups("", nn.MultiheadAttention(4, 1))
    assert not g.supported and "single head" in g.reason and g.members == ()


@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU, nn.RNN])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_a_pruned_recurrent_unit_is_exactly_zero_at_every_step(cls, bidirectional):
    torch.manual_seed(0)
    rnn = cls(3, 5, num_layers=2, batch_first=True, bidirectional=bidirectional)
    groups = _rnn_groups("rnn", rnn)
    dirs = 2 if bidirectional else 1
    assert [g.id for g in groups] == [f"rnn:l{i}{s}" for i in range(2) for s in ["", "_reverse"][:dirs]]
    last = groups[-dirs]  # the top layer's forward direction
    pruned = torch.zeros(5, dtype=torch.bool)
    pruned[[1, 3]] = True
    shapes = {f"rnn.{n}": p.shape for n, p in rnn.named_parameters()}
    _apply(rnn, {k[4:]: v for k, v in last.masks(pruned, shapes).items()})
    with torch.no_grad():
        out, _ = rnn(torch.randn(2, 7, 3))
    assert (out[..., [1, 3]] == 0).all() and (out[..., [0, 2, 4]] != 0).any()


def test_what_is_not_supported_says_why():
    lstm = nn.LSTM(3, 6, proj_size=2)
    assert all("proj_size" in g.reason for g in _rnn_groups("", lstm))
