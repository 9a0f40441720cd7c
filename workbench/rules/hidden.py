"""The hidden size (the residual stream), found by probe forwards (see `workbench.rules`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ..groups import ChannelGroup, Member
from ._layers import _join, _linear, linear_dims
from .attention import _FUSED, _SEPARATE, AttentionSpec, find_attention
from .mlp import find_mlps

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
    from .._interrupt import deferred_interrupt
    from ..adapter import logits_of

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
