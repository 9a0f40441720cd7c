"""Attention heads from the module tree (see `workbench.rules`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..groups import ChannelGroup, Member
from ._layers import _child, _join, _linear, linear_dims


# attention ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AttentionSpec:
    """Where one attention module's projections are and how its heads are laid out.

    `layout`: ``"separate"`` (q, k, v, o are four layers), ``"fused"`` (one layer outputs ``[Q | K | V]``, GPT-2),
    ``"interleaved"`` (one layer outputs ``[q_h k_h v_h]`` per head, GPT-NeoX). `q`, `k`, `v` name the same layer
    when fused. `heads` / `kv_heads` / `head_dim` as the module computes them.
    """

    module: str
    q: str
    k: str
    v: str
    o: str
    layout: str
    heads: int
    kv_heads: int
    head_dim: int
    shared: str = ""  # non-empty: heads shared with every attention of the same key (one position bias per stack)


_SEPARATE = (
    ("q_proj", "k_proj", "v_proj", ("o_proj", "out_proj", "dense")),
    ("q_lin", "k_lin", "v_lin", ("out_lin",)),
    ("q", "k", "v", ("o",)),
    ("query", "key", "value", ("dense", "out_proj", "o_proj")),
)
_FUSED = (("c_attn", "c_proj", "fused"), ("query_key_value", "dense", "interleaved"), ("qkv_proj", "o_proj", "fused"))
_HEAD_ATTRS = ("num_heads", "num_attention_heads", "n_heads", "n_head")
_DIM_ATTRS = ("head_dim", "attention_head_size", "head_size", "key_value_proj_dim")


def _attr(mod: nn.Module, names: Iterable[str]) -> int | None:
    cfg = getattr(mod, "config", None)
    for n in names:
        for src in (mod, cfg):
            v = getattr(src, n, None) if src is not None else None
            if isinstance(v, int) and not isinstance(v, bool) and v > 0:
                return v
    return None


def find_attention(model: nn.Module) -> tuple[list[AttentionSpec], dict[str, str]]:
    """The attention modules the rules recognise, and for the ones that look like attention but do not fit, why."""
    specs: list[AttentionSpec] = []
    refused: dict[str, str] = {}
    claimed: set[str] = set()
    for name, mod in model.named_modules():
        if isinstance(mod, nn.MultiheadAttention):
            continue  # nn.MultiheadAttention has its own rule (workbench.groups)
        spec, why = _attention_spec(model, name, mod)
        if spec is not None and spec.q not in claimed:
            specs.append(spec)
            claimed.update((spec.q, spec.k, spec.v))
        elif why:
            refused[name] = why
    return specs, refused


def _attention_spec(model: nn.Module, name: str, mod: nn.Module) -> tuple[AttentionSpec | None, str]:
    kids = dict(mod.named_children())
    for qn, kn, vn, outs in _SEPARATE:
        q, k, v = kids.get(qn), kids.get(kn), kids.get(vn)
        if not (_linear(q) and _linear(k) and _linear(v)):
            continue
        o_name = next((_join(name, c) for c in outs if _linear(kids.get(c))), None)
        if o_name is None:  # BERT-style: the output projection is the parent's `output.dense`
            parent = name.rsplit(".", 1)[0] if "." in name else ""
            cand = _join(parent, "output.dense")
            if parent != name and _linear(_child(model, cand)):
                o_name = cand
        if o_name is None:
            return None, f"attention {name!r}: found {qn}/{kn}/{vn} but no output projection"
        heads = _attr(mod, _HEAD_ATTRS) or _attr(_child(model, name.rsplit(".", 1)[0]) or mod, _HEAD_ATTRS)
        q_out, k_out = linear_dims(q)[2], linear_dims(k)[2]
        dim = _attr(mod, _DIM_ATTRS) or (q_out // heads if heads else None)
        if not heads or not dim or q_out % dim or k_out % dim:
            return None, f"attention {name!r}: cannot tell its number of heads (no num_heads/head_dim attribute fits)"
        heads = q_out // dim
        kv = k_out // dim
        if linear_dims(v)[2] != k_out or heads % kv:
            return None, f"attention {name!r}: {heads} query heads do not split evenly over {kv} key/value heads"
        shared = ""
        if getattr(mod, "has_relative_attention_bias", None) is not None or hasattr(mod, "relative_attention_bias"):
            # T5: the first layer of a stack computes a position bias per head (zeros for cross-attention) and every
            # later layer adds it to its own scores, so head h is head h in every layer of the stack
            shared = _stack_key(name)
        o_in = linear_dims(model.get_submodule(o_name))[3]
        if o_in != q_out:
            return None, f"attention {name!r}: the output projection reads {o_in} features, the heads give {q_out}"
        return AttentionSpec(
            name, _join(name, qn), _join(name, kn), _join(name, vn), o_name, "separate", heads, kv, dim, shared
        ), ""
    for fn, on, layout in _FUSED:
        f, o = kids.get(fn), kids.get(on)
        if not (_linear(f) and _linear(o)):
            continue
        heads = _attr(mod, _HEAD_ATTRS)
        width = linear_dims(f)[2]
        dim = _attr(mod, _DIM_ATTRS) or (width // 3 // heads if heads else None)
        if not dim or width % (3 * dim):
            return None, f"attention {name!r}: cannot tell its number of heads from its fused projection {fn!r}"
        heads = width // 3 // dim
        if linear_dims(o)[3] != heads * dim:
            return None, f"attention {name!r}: the output projection does not read {heads} heads of {dim} features"
        full = _join(name, fn)
        return AttentionSpec(name, full, full, full, _join(name, on), layout, heads, heads, dim), ""
    return None, ""


def _stack_key(name: str) -> str:
    """The place of an attention module in its stack, layer indices replaced by ``*``:
    ``decoder.block.3.layer.1.EncDecAttention`` -> ``decoder.block.*.layer.1.EncDecAttention``."""
    return ".".join("*" if part.isdigit() else part for part in name.split("."))


def _rows_bias(model: nn.Module, layer: str, index: Tensor, root: Tensor, producer: bool = True) -> list[Member]:
    mod = model.get_submodule(layer)
    out_dim = linear_dims(mod)[0]
    ms = [Member(f"{layer}.weight", out_dim, index, root, producer=producer)]
    if getattr(mod, "bias", None) is not None:
        ms.append(Member(f"{layer}.bias", 0, index, root))
    return ms


def head_members(model: nn.Module, s: AttentionSpec) -> list[Member]:
    """The parameter slices of each KV group of `s` (root = KV head)."""
    d, rep = s.head_dim, s.heads // s.kv_heads
    q_idx = torch.arange(s.heads * d)
    q_root = q_idx // d // rep
    kv_idx = torch.arange(s.kv_heads * d)
    kv_root = kv_idx // d
    members: list[Member] = []
    if s.layout == "separate":
        members += _rows_bias(model, s.q, q_idx, q_root)
        members += _rows_bias(model, s.k, kv_idx, kv_root)
        members += _rows_bias(model, s.v, kv_idx, kv_root)
    elif s.layout == "fused":  # [Q | K | V], each heads x d wide
        w = s.heads * d
        idx = torch.cat([q_idx, kv_idx + w, kv_idx + 2 * w])
        members += _rows_bias(model, s.q, idx, torch.cat([q_root, kv_root, kv_root]))
    else:  # interleaved: head h owns [q_h k_h v_h], 3d wide
        idx = torch.arange(3 * s.heads * d)
        members += _rows_bias(model, s.q, idx, idx // (3 * d))
    o = model.get_submodule(s.o)
    members.append(Member(f"{s.o}.weight", linear_dims(o)[1], q_idx, q_root, producer=True))
    att = model.get_submodule(s.module) if s.module else model
    for pname, p in att.named_parameters():  # per-head position biases (Swin's table): a head's column goes with it
        if any(k in pname for k in _PER_HEAD) and p.dim() == 2 and p.shape[1] == s.heads:
            h = torch.arange(s.heads)
            members.insert(0, Member(_join(s.module, pname), 1, h, h // rep))
    return members


# parameters of an attention module that hold one column per query head (a pruned head's column is cut with it)
_PER_HEAD = ("relative_position_bias_table", "relative_attention_bias")


def attention_groups(model: nn.Module) -> list[ChannelGroup]:
    """One ``head`` group per recognised attention module (see the module docstring)."""
    specs, _ = find_attention(model)
    out = []
    stacks: dict[str, list[AttentionSpec]] = {}
    for s in specs:
        if s.shared:
            stacks.setdefault(s.shared, []).append(s)
            continue
        producers = tuple(dict.fromkeys((s.q, s.k, s.v, s.o)))
        reason = "" if s.kv_heads > 1 else "it has a single key/value head: removing it would empty the layer"
        out.append(
            ChannelGroup(
                f"{s.module}:heads", s.kv_heads, producers, tuple(head_members(model, s)), reason, "head", "rules"
            )
        )
    for key, same in stacks.items():  # one group per stack: head h goes from every layer at once
        producers = tuple(dict.fromkeys(p for s in same for p in (s.q, s.k, s.v, s.o)))
        members = tuple(m for s in same for m in head_members(model, s))
        kinds = {(s.heads, s.kv_heads, s.head_dim) for s in same}
        reason = ""
        if len(kinds) > 1:
            reason = f"the attentions {key!r} share one position bias but have different head counts {sorted(kinds)}"
        elif same[0].kv_heads < 2:
            reason = "it has a single key/value head: removing it would empty the layer"
        modules = tuple(s.module for s in same)
        out.append(
            ChannelGroup(f"{key}:heads", same[0].kv_heads, producers, members, reason, "head", "rules", modules=modules)
        )
    return out
