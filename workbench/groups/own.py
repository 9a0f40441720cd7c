"""Rules of our own for units no trace is needed for: heads of nn.MultiheadAttention, recurrent units."""

from __future__ import annotations

import torch
from torch import nn

from .types import ChannelGroup, Member


def _head_groups(name: str, mha: nn.MultiheadAttention) -> list[ChannelGroup]:
    """One group whose units are the heads of `mha` (see the module docstring)."""
    pre = f"{name}." if name else ""
    e, h = mha.embed_dim, mha.num_heads
    d = e // h
    gid = f"{name}:heads"
    if h < 2:
        return [
            ChannelGroup(gid, h, (name,), (), "it has a single head: removing it would empty the layer", "head", "own")
        ]
    head = torch.arange(e) // d
    rows = torch.arange(e)
    members: list[Member] = []
    if mha.in_proj_weight is not None:
        members.append(Member(f"{pre}in_proj_weight", 0, torch.arange(3 * e), head.repeat(3), producer=True))
    else:
        for p in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
            members.append(Member(f"{pre}{p}", 0, rows, head, producer=True))
    if mha.in_proj_bias is not None:
        members.append(Member(f"{pre}in_proj_bias", 0, torch.arange(3 * e), head.repeat(3)))
    for p in ("bias_k", "bias_v"):
        if getattr(mha, p, None) is not None:
            members.append(Member(f"{pre}{p}", 2, rows, head))
    members.append(Member(f"{pre}out_proj.weight", 1, rows, head, producer=True))
    return [ChannelGroup(gid, h, (name,), tuple(members), "", "head", "own")]


_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}


def _rnn_groups(name: str, rnn: nn.RNNBase) -> list[ChannelGroup]:
    """One group per layer and direction of `rnn`, whose units are its hidden units."""
    pre = f"{name}." if name else ""
    gates, hsz = _GATES.get(rnn.mode, 0), rnn.hidden_size
    dirs = ["", "_reverse"] if rnn.bidirectional else [""]
    out = []
    for layer in range(rnn.num_layers):
        for di, sfx in enumerate(dirs):
            gid = f"{name}:l{layer}{sfx}"
            if not gates or getattr(rnn, "proj_size", 0):
                why = (
                    "LSTMs with proj_size > 0 are not supported yet"
                    if gates
                    else f"unknown recurrent mode {rnn.mode!r}"
                )
                out.append(ChannelGroup(gid, hsz, (name,), (), why, "lstm-unit", "own"))
                continue
            unit = torch.arange(gates * hsz) % hsz
            rows, cols = torch.arange(gates * hsz), torch.arange(hsz)
            members = [
                Member(f"{pre}weight_ih_l{layer}{sfx}", 0, rows, unit, producer=True),
                Member(f"{pre}weight_hh_l{layer}{sfx}", 0, rows, unit, producer=True),
            ]
            if rnn.bias:
                members += [
                    Member(f"{pre}bias_ih_l{layer}{sfx}", 0, rows, unit),
                    Member(f"{pre}bias_hh_l{layer}{sfx}", 0, rows, unit),
                ]
            members.append(Member(f"{pre}weight_hh_l{layer}{sfx}", 1, cols, cols))  # the recurrence reads it
            if layer + 1 < rnn.num_layers:  # the next layer reads it, in both of its directions
                for nxt in dirs:
                    members.append(Member(f"{pre}weight_ih_l{layer + 1}{nxt}", 1, cols + di * hsz, cols))
            out.append(ChannelGroup(gid, hsz, (name,), tuple(members), "", "lstm-unit", "own"))
    return out
