"""MLP neurons from the module tree (see `workbench.rules`)."""

from __future__ import annotations

import torch
from torch import nn

from ..groups import ChannelGroup, Member
from ._layers import _child, _join, _linear, linear_dims
from .attention import _rows_bias, attention_groups

# MLPs -----------------------------------------------------------------------------------------------------------
_MLPS = (
    (("gate_proj", "up_proj"), "down_proj"),
    (("w1", "w3"), "w2"),
    (("fc1",), "fc2"),
    (("c_fc",), "c_proj"),
    (("dense_h_to_4h",), "dense_4h_to_h"),
    (("wi_0", "wi_1"), "wo"),
    (("wi",), "wo"),
    (("lin1",), "lin2"),
    (("intermediate.dense",), "output.dense"),
    (("ffn",), "ffn_output"),
    (("pwconv1",), "pwconv2"),
)


def find_mlps(model: nn.Module) -> list[tuple[str, tuple[str, ...], str]]:
    """``(module, input projections, output projection)`` of every MLP the rules recognise."""
    found = []
    claimed: set[str] = set()
    for name, mod in model.named_modules():
        for ups, down in _MLPS:
            up_names = [_join(name, u) for u in ups]
            down_name = _join(name, down)
            layers = [_child(mod, u) for u in ups]
            out = _child(mod, down)
            if not all(_linear(m) for m in layers) or not _linear(out) or down_name in claimed:
                continue
            width = {linear_dims(m)[2] for m in layers}
            if len(width) != 1 or linear_dims(out)[3] != next(iter(width)):
                continue
            if any(u in claimed for u in up_names):
                continue
            found.append((name, tuple(up_names), down_name))
            claimed.update(up_names)
            claimed.add(down_name)
            break
    return found


def mlp_groups(model: nn.Module) -> list[ChannelGroup]:
    """One neuron group per recognised MLP, named after its first input projection."""
    out = []
    for name, ups, down in find_mlps(model):
        n = linear_dims(model.get_submodule(ups[0]))[2]
        idx = torch.arange(n)
        members: list[Member] = []
        for u in ups:
            members += _rows_bias(model, u, idx, idx)
        for cname, conv in model.get_submodule(name).named_modules() if name else model.named_modules():
            # a depthwise conv between the projections (SegFormer's Mix-FFN, ConvNeXt-style): its channel j goes too
            if isinstance(conv, nn.modules.conv._ConvNd) and conv.groups == conv.in_channels == conv.out_channels == n:
                full = _join(name, cname)
                members.append(Member(f"{full}.weight", 0, idx, idx))
                if conv.bias is not None:
                    members.append(Member(f"{full}.bias", 0, idx, idx))
        members.append(Member(f"{down}.weight", linear_dims(model.get_submodule(down))[1], idx, idx))
        reason = "" if n > 1 else "it has a single neuron"
        out.append(ChannelGroup(ups[0], n, ups, tuple(members), reason, "channel", "rules"))
    return out


def rule_groups(model: nn.Module) -> list[ChannelGroup]:
    """Every group the module-tree rules find: attention heads and MLP neurons."""
    return attention_groups(model) + mlp_groups(model)
