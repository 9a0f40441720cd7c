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
projection. T5 computes one relative position bias per head in the first layer of each stack (zeros for
cross-attention) and adds it in every later layer, so there a unit is head h of every layer of the stack at once (and
its column of the bias table): the layers keep equal head counts and the shrunk model's own forward runs. Zeroed, the head's queries and keys are zero, its values zero, so it adds exactly nothing, rotary
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

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .groups import ChannelGroup, Member

__all__ = [
    "AttentionSpec",
    "attention_groups",
    "hidden_group",
    "is_conv1d",
    "linear_dims",
    "mlp_groups",
    "norm_form",
    "rule_groups",
]


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


# hidden size ----------------------------------------------------------------------------------------------------
_PROBE_CHANNELS = 3  # channels zeroed by the probe forwards that find the residual stream


def _hidden_size(model: nn.Module, specs: list[AttentionSpec], mlps: list[tuple[str, tuple[str, ...], str]]) -> int:
    """The width of the residual stream: what every attention output projection and MLP output projection writes
    (0 when they disagree or there are none: a multi-stage model like Swin has no single hidden size)."""
    outs = {linear_dims(model.get_submodule(s.o))[2] for s in specs}
    outs |= {linear_dims(model.get_submodule(down))[2] for _, _, down in mlps}
    return next(iter(outs)) if len(outs) == 1 else 0


def norm_form(norm: nn.Module) -> str:
    """How a norm layer over the last dimension computes, found by running it on a random input: ``"layer"``
    (mean and variance: ``nn.LayerNorm``), ``"rms"`` (``x / rms(x) * w``: LLaMA, T5, Mistral, Qwen2), ``"rms1p"``
    (``x / rms(x) * (1 + w)``: Gemma), or ``""`` (none of these, or no weight / eps to go by)."""
    w = getattr(norm, "weight", None)
    eps = _norm_eps(norm)
    if not isinstance(w, Tensor) or w.dim() != 1 or eps is None:
        return ""
    if isinstance(norm, nn.LayerNorm):
        return "layer" if type(norm) is nn.LayerNorm else ""  # a subclass may compute otherwise: not shrunk
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, w.shape[0], generator=g).to(w.dtype)
    with torch.no_grad():
        try:
            y = norm(x).float()
        except Exception:
            return ""
        xf, wf = x.float(), w.detach().float()
        r = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
        tol = 1e-3 if w.dtype in (torch.float16, torch.bfloat16) else 1e-5
        for form, ref in (("rms", r * wf), ("rms1p", r * (1 + wf))):
            if torch.allclose(y, ref, rtol=tol, atol=tol):
                return form
    return ""


def _norm_eps(norm: nn.Module) -> float | None:
    for a in ("eps", "variance_epsilon"):
        v = getattr(norm, a, None)
        if isinstance(v, float):
            return v
    return None


def _is_norm(mod: nn.Module, d: int) -> bool:
    w = getattr(mod, "weight", None)
    named = isinstance(mod, (nn.LayerNorm,)) or "norm" in type(mod).__name__.lower()
    return named and isinstance(w, Tensor) and tuple(w.shape) == (d,)


def _reads(mod: nn.Module, d: int) -> bool:
    """A layer that could read a `d`-wide input: Linear / Conv1D with `d` input features, conv with `d` channels."""
    if _linear(mod):
        return linear_dims(mod)[3] == d
    return isinstance(mod, nn.modules.conv._ConvNd) and mod.in_channels == d


def _writes(mod: nn.Module, d: int) -> int | None:
    """The dimension of `mod`'s weight that holds its `d` outputs, or None."""
    w = getattr(mod, "weight", None)
    if not isinstance(w, Tensor):
        return None
    if _linear(mod):
        return linear_dims(mod)[0] if linear_dims(mod)[2] == d else None
    if isinstance(mod, nn.modules.conv._ConvNd) and not mod.transposed and mod.out_channels == d and mod.groups == 1:
        return 0
    if isinstance(mod, nn.Embedding) and mod.embedding_dim == d:
        return 1
    return None


def _zero_input(x: Any, dim: int, idx: Tensor) -> bool:
    return (
        isinstance(x, Tensor)
        and x.dim() > 0
        and x.shape[dim] > int(idx.max())
        and not bool(x.index_select(dim, idx.to(x.device)).any())
    )


def hidden_group(
    model: nn.Module, run: Callable[[nn.Module], Any], specs: list[AttentionSpec] | None = None, mlps=None
) -> tuple[ChannelGroup | None, str]:
    """The ``hidden`` group of a transformer: the channels of its residual stream, or (None, why not).

    Channel c of the stream is column c of every embedding, row c of every attention and MLP output projection
    (and their biases), channel c of every norm on the stream, and column c of every layer reading it (q/k/v, the
    MLP's input projections, the classifier or LM head). Zeroed, channel c is exactly zero all along the stream.
    The stream is found, not assumed: `run(model)` (one forward on example inputs) is called with a few channels
    zeroed in the candidate writers and norms (in place, restored bitwise afterwards); the layers whose inputs are
    then zero in those channels read the stream, and a candidate writer that changes nothing when left alone is
    not one. Refused (with the reason): the model returns the hidden states themselves, a grouped conv or a
    parametrized layer reads the stream, or a norm on it computes in a way the shrink cannot follow.

    Shrinking removes the channels for real; the norms then normalise over fewer channels, so they are adjusted to
    compute what they computed with those channels at zero (`workbench.sparse.shrink`).
    """
    from ._interrupt import deferred_interrupt
    from .adapter import logits_of

    if specs is None:
        specs = find_attention(model)[0]
    if mlps is None:
        mlps = find_mlps(model)
    d = _hidden_size(model, specs, mlps)
    if d < 2:
        return None, ""
    mods = dict(model.named_modules())
    canon: dict[int, str] = {}
    aliases: dict[str, list[str]] = {}
    for n, p in model.named_parameters(remove_duplicate=False):
        first = canon.setdefault(id(p), n)
        aliases.setdefault(first, []).append(n)
    inner = {s.q for s in specs} | {s.k for s in specs} | {s.v for s in specs} | {u for _, us, _ in mlps for u in us}
    qkv_names = {n for q, k, v, _ in _SEPARATE for n in (q, k, v)} | {f for f, _, _ in _FUSED}
    for n, m in mods.items():  # query/key/value layers of attention no rule fits (T5's): their outputs are heads
        inner |= {_join(n, c) for c, kid in m.named_children() if c in qkv_names and _linear(kid)}
    sure = [s.o for s in specs] + [down for _, _, down in mlps]
    cands: list[str] = []  # writers to test one by one: embeddings, patch embeddings, poolers, ...
    for n, m in mods.items():
        if n in inner or n in sure or _writes(m, d) is None:
            continue
        cands.append(n)
    raw: dict[str, list[str]] = {}  # parameters of other modules holding d features last (ViT's cls token, positions)
    for n, m in mods.items():
        if _linear(m) or isinstance(m, (nn.modules.conv._ConvNd, nn.Embedding)) or _is_norm(m, d):
            continue
        for pn, p in m.named_parameters(recurse=False):
            if p.dim() >= 2 and p.shape[-1] == d and not any(p.shape[i] == d for i in range(p.dim() - 1)):
                raw.setdefault(n, []).append(_join(n, pn))
    norms = [n for n, m in mods.items() if _is_norm(m, d)]
    consumers = [n for n, m in mods.items() if _reads(m, d) or _is_norm(m, d)]
    idx = torch.randperm(d, generator=torch.Generator().manual_seed(0))[:_PROBE_CHANNELS].sort().values

    def slices(writers: list[str], raws: list[str], norm_names: list[str]) -> list[tuple[str, int]]:
        out = []
        for n in writers:
            m = mods[n]
            dim = _writes(m, d)
            out.append((_join(n, "weight"), dim))
            if getattr(m, "bias", None) is not None and not isinstance(m, nn.Embedding):
                out.append((_join(n, "bias"), 0))
        out += [(p, model.get_parameter(p).dim() - 1) for p in raws]
        for n in norm_names:
            out.append((_join(n, "weight"), 0))
            if isinstance(getattr(mods[n], "bias", None), Tensor):
                out.append((_join(n, "bias"), 0))
        return [(canon.get(id(model.get_parameter(p)), p), dim) for p, dim in out]

    def probe(
        writers: list[str], raws: list[str], norm_names: list[str], filled: tuple[list[str], list[str]] = ([], [])
    ) -> tuple[set[str], Any]:
        """Consumers whose inputs are zero in the probed channels on every call, and the model's prediction. The
        slices of `filled` (writers, raw parameters) are set to one instead: a candidate left as it is could be
        zero already (a cls token initialised to zeros) and look like it writes nothing."""
        ones = dict.fromkeys(slices(filled[0], filled[1], []))
        zero = {n: True for n in consumers}
        hooks = []
        for n in consumers:
            m = mods[n]
            dim = 1 if isinstance(m, nn.modules.conv._ConvNd) else -1

            def pre(mod, args, kwargs, n=n, dim=dim):
                x = args[0] if args else next(iter(kwargs.values()), None)
                zero[n] = zero[n] and _zero_input(x, dim, idx)

            hooks.append(m.register_forward_pre_hook(pre, with_kwargs=True))
        saved: list[tuple[Tensor, int, Tensor]] = []
        try:
            with deferred_interrupt(), torch.no_grad():
                try:
                    for (p, dim), value in {**dict.fromkeys(slices(writers, raws, norm_names), 0.0), **ones}.items():
                        t = model.get_parameter(p)
                        saved.append((t, dim, t.index_select(dim, idx.to(t.device)).clone()))
                        t.index_fill_(dim, idx.to(t.device), 1.0 if value is None else value)
                    y = logits_of(run(model))
                finally:
                    for t, dim, old in reversed(saved):
                        t.index_copy_(dim, idx.to(t.device), old)
        finally:
            for h in hooks:
                h.remove()
        return {n for n, z in zero.items() if z}, y

    raw_names = [p for ps in raw.values() for p in ps]
    first_off = ""
    for _ in range(4):  # a norm whose input is not zero is not on the stream: leave it and probe again
        found, y = probe(sure + cands, raw_names, norms)
        off = [n for n in norms if n not in found]
        first_off = first_off or (off[0] if off else "")
        if not off:
            break
        norms = [n for n in norms if n in found]
    if off or not norms:
        where = f" ({first_off!r} sees them non-zero)" if first_off else ""
        return None, (
            f"hidden size: with channels zeroed in every layer known to write the residual stream, its norms do not "
            f"see them at zero{where}: something else writes to the stream (a layer the rules do not know, e.g. a "
            "convolutional position embedding)"
        )
    if isinstance(y, Tensor) and y.dim() > 0 and y.shape[-1] == d and _zero_input(y, -1, idx):
        return None, (
            f"hidden size: the model returns the {d} hidden features themselves (not a prediction from them); "
            "pruning them would change the size of its output"
        )
    writers = list(sure)
    for n in cands:  # a candidate that changes nothing when set to ones does not write to the stream
        if probe(sure + [c for c in cands if c != n], raw_names, norms, ([n], []))[0] != found:
            writers.append(n)
    raws: list[str] = []
    for ps in raw.values():
        if probe(writers, [p for p in raw_names if p not in ps], norms, ([], ps))[0] != found:
            raws += ps
    final, _ = probe(writers, raws, norms)
    if final != found:
        return None, "hidden size: the residual stream changes when its writers are probed one by one"
    readers = [n for n in found if n not in norms]
    for n in readers + writers:
        m = mods[n]
        if isinstance(m, nn.modules.conv._ConvNd) and m.groups != 1:
            return None, f"hidden size: {n!r} reads the hidden features with a grouped conv ({m.groups} groups)"
        if hasattr(m, "parametrizations"):
            return None, f"hidden size: {n!r} is parametrized (weight norm?); its slices cannot be cut"
    for n in norms:
        if not norm_form(mods[n]):
            return None, (
                f"hidden size: the norm {n!r} ({type(mods[n]).__name__}) computes in a way the shrink cannot "
                "follow (not LayerNorm, RMSNorm or (1 + w) RMSNorm)"
            )
    full = torch.arange(d)
    members: dict[tuple[str, int], Member] = {}

    def add(p: str, dim: int, producer: bool = False) -> None:
        p = canon.get(id(model.get_parameter(p)), p)
        key = (p, dim)
        if key not in members or (producer and not members[key].producer):
            members[key] = Member(p, dim, full, full, producer=producer)

    for p, dim in slices(writers, raws, norms):
        add(p, dim, producer=p.endswith("weight") and not any(p.startswith(_join(n, "")) for n in norms))
    for n in readers:
        m = mods[n]
        add(_join(n, "weight"), 1 if isinstance(m, nn.modules.conv._ConvNd) else linear_dims(m)[1])
    member_params = {k[0] for k in members}
    for p, names in aliases.items():  # a tied tensor: every module using it must cut the same slices
        if p in member_params and len(names) > 1:
            for alias in names[1:]:
                owner = alias.rpartition(".")[0]
                if owner not in found and owner not in writers:
                    return None, f"hidden size: {alias!r} is tied to {p!r} but does not read or write the stream"
    # the layers a plan names: each writer once, a tied alias (BART's encoder/decoder embed_tokens) through its owner
    producers = tuple(dict.fromkeys(n for n in writers if canon[id(mods[n].weight)] == _join(n, "weight")))
    group = ChannelGroup("hidden", d, producers, tuple(members.values()), "", "hidden", "rules")
    return group, ""
