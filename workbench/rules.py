"""Module-tree rules for transformer blocks: attention heads and MLP neurons, found by the modules' names, no tracing.

Torch-Pruning's dependency graph cannot see through attention (softmax, matmuls, reshapes) and hangs on grouped-query
attention; Hugging Face models do not trace with torch.fx either. These rules read the structure from the module
tree instead, the way the models are written:

**Attention heads** (``unit="head"``): an attention module with separate query/key/value/output projections
(``q_proj/k_proj/v_proj/o_proj`` and ``out_proj``/``dense`` as the output: LLaMA, Mistral, Qwen2, Gemma, Phi, OPT,
BART, Whisper, ViT; ``q_lin/k_lin/v_lin/out_lin``: DistilBERT; ``q/k/v/o``: T5; ``query/key/value`` with ``dense`` or
a sibling ``output.dense``: BERT, RoBERTa, ELECTRA, ALBERT, Swin), a fused one (GPT-2's ``c_attn``/``c_proj``
``Conv1D``; GPT-NeoX's ``query_key_value``/``dense``, heads interleaved). The unit is a key/value head with the query
heads that read it (grouped-query attention: ``num_heads / num_kv_heads`` query heads per KV head; plain
multi-head attention: one head): its rows of the q, k and v projections (and biases) and its columns of the output
projection. Zeroed, the head's queries and keys are zero, its values zero, so it adds exactly nothing, rotary
embeddings and position biases included: the masked model computes what the model without those heads computes.

**MLP neurons** (``unit="channel"``, the ``neuron`` granularity of the input projections): an MLP's input projections
(``gate_proj`` + ``up_proj``: gated; ``fc1``, ``c_fc``, ``dense_h_to_4h``, ``wi`` / ``wi_0`` + ``wi_1``, ``lin1``,
``intermediate.dense``, ``ffn``, ``pwconv1``) and its output projection (``down_proj``, ``fc2``, ``c_proj``,
``dense_4h_to_h``, ``wo``, ``lin2``, ``output.dense``, ``ffn_output``, ``pwconv2``): neuron j is row j of every input
projection (and bias) and column j of the output projection, so zeroing it removes exactly what shrinking removes,
whatever the activation.

Hugging Face's ``Conv1D`` stores its weight transposed (``in x out``); the members say which dimension is which.
A rule only applies when the shapes agree (heads x head size = the projections' widths), else it reports why.

>>> import torch
>>> class Attn(torch.nn.Module):
...     def __init__(self):
...         super().__init__()
...         self.num_heads, self.head_dim = 4, 2
...         self.q_proj, self.k_proj = torch.nn.Linear(8, 8), torch.nn.Linear(8, 4)
...         self.v_proj, self.o_proj = torch.nn.Linear(8, 4), torch.nn.Linear(8, 8)
>>> g = attention_groups(torch.nn.Sequential(Attn()))[0]
>>> g.unit, g.size, g.producers  # 2 KV heads, each read by 2 query heads
('head', 2, ('0.q_proj', '0.k_proj', '0.v_proj', '0.o_proj'))
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .groups import ChannelGroup, Member

__all__ = ["AttentionSpec", "attention_groups", "is_conv1d", "linear_dims", "mlp_groups", "rule_groups"]


def is_conv1d(module: nn.Module) -> bool:
    """Hugging Face's ``Conv1D`` (GPT-2 and relatives): a linear layer whose weight is stored ``in x out``."""
    w = getattr(module, "weight", None)
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf") and isinstance(w, Tensor) and w.dim() == 2


def _linear(module: nn.Module | None) -> bool:
    return isinstance(module, nn.Linear) or (module is not None and is_conv1d(module))


def linear_dims(module: nn.Module) -> tuple[int, int, int, int]:
    """``(out_dim, in_dim, out_features, in_features)`` of a Linear (``out x in`` weight) or a Conv1D (``in x out``)."""
    w = module.weight
    if is_conv1d(module):
        return 1, 0, int(w.shape[1]), int(w.shape[0])
    return 0, 1, int(w.shape[0]), int(w.shape[1])


def _child(root: nn.Module, name: str) -> nn.Module | None:
    try:
        return root.get_submodule(name)
    except AttributeError:
        return None


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


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
        if getattr(mod, "has_relative_attention_bias", None) is not None or hasattr(mod, "relative_attention_bias"):
            return None, (
                f"attention {name!r} takes a relative position bias computed once per stack and shared by every "
                "layer's heads: heads cannot be removed layer by layer yet"
            )
        o_in = linear_dims(model.get_submodule(o_name))[3]
        if o_in != q_out:
            return None, f"attention {name!r}: the output projection reads {o_in} features, the heads give {q_out}"
        return AttentionSpec(
            name, _join(name, qn), _join(name, kn), _join(name, vn), o_name, "separate", heads, kv, dim
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
    for s in specs:
        producers = tuple(dict.fromkeys((s.q, s.k, s.v, s.o)))
        reason = "" if s.kv_heads > 1 else "it has a single key/value head: removing it would empty the layer"
        out.append(
            ChannelGroup(
                f"{s.module}:heads", s.kv_heads, producers, tuple(head_members(model, s)), reason, "head", "rules"
            )
        )
    return out


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
