"""Physical shrink: remove fully pruned coupled channels (filters, neurons and everything coupled to them).

Which channels go comes from the workbench's coupled groups (`workbench.groups`): a root channel of a
supported group goes when *every* slice of it is pruned — the producing filters/neurons, their biases, the
BatchNorm channel after them and the consumers' input slices — which is exactly what a ``filter`` or
``neuron`` plan masks. Then Torch-Pruning removes them from a copy: its `DependencyGraph` is traced on the
copy and each group is pruned with ``get_pruning_group(root, prune_out_channels, idxs).prune()`` (index
mappings through concats and flattens are updated between groups). The copy computes what the masked model
computes; `workbench.sparse.compile` checks that on real inputs before returning it.

>>> import torch, workbench as wb
>>> model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
>>> bench = wb.Workbench(model, [(torch.randn(4, 8), torch.tensor([0, 1, 2, 0]))])
>>> _ = bench.apply(wb.Plan.uniform(0.5, granularity="neuron"), evaluate=False)
>>> {k: len(v) for k, v in prunable_channels(bench.groups, dict(model.named_parameters(remove_duplicate=False)), bench.masks).items()}
{'0': 8}
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from ..groups import GroupAnalysis, custom_pruners, trace_call

__all__ = [
    "count_params",
    "prunable_channels",
    "shrink_",
    "shrink_heads_",
    "shrink_rnn_units_",
    "shrink_rule_groups_",
    "traceable",
]


@contextmanager
def traceable(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode, gradients on and every parameter requiring grad (Torch-Pruning traces autograd graphs);
    flags restored after."""
    modes = {mod: mod.training for mod in model.modules()}
    flags = {p: p.requires_grad for p in model.parameters()}
    model.eval()
    try:
        for p in flags:
            p.requires_grad_(True)
        with torch.enable_grad():
            yield model
    finally:
        for mod, flag in modes.items():
            mod.training = flag
        for p, flag in flags.items():
            p.requires_grad_(flag)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def prunable_channels(
    groups: GroupAnalysis,
    params: Mapping[str, Tensor],
    masks: Mapping[str, Tensor] | None = None,
    unit: str = "channel",
    origin: str | None = None,
) -> dict[str, list[int]]:
    """Per supported group id of this `unit` ("channel" or "head") and `origin` (None: any), the root units whose
    every member slice is pruned.

    `params` must hold every name a group uses, tied tensors under each module's name
    (``dict(model.named_parameters(remove_duplicate=False))``; plain `named_parameters()` lists a tied tensor
    once). `masks` (True = pruned) say what is pruned; without them a slice counts as pruned when it is all zero.
    At least one unit of each group is kept.
    """
    out: dict[str, list[int]] = {}
    for gid, grp in groups.groups.items():
        if not grp.supported or not grp.members or grp.unit != unit or (origin is not None and grp.origin != origin):
            continue  # recurrent units stay masked: an nn.LSTM's output width is read by layers we cannot trace
        full = torch.ones(grp.size, dtype=torch.bool)
        for m in grp.members:
            p = params[m.param]
            pm = (p.detach() == 0) if masks is None else masks.get(m.param)
            if pm is None:
                full[m.root] = False
                continue
            per_pos = pm.movedim(m.dim, 0).reshape(p.shape[m.dim], -1).all(1).cpu()
            bad = ~per_pos[m.index]
            full[m.root[bad]] = False
        if bool(full.all()):
            full[-1] = False  # never empty a layer
        idx = full.nonzero().flatten().tolist()
        if idx:
            out[gid] = idx
    return out


def shrink_(
    model: nn.Module,
    example_inputs: Tensor | Sequence[Tensor],
    channels: Mapping[str, list[int]],
    groups: GroupAnalysis | None = None,
) -> None:
    """Remove `channels` (group root name -> root units) from `model` in place with Torch-Pruning; with `groups`,
    a group's units through grouped convs stand for one channel per block (`ChannelGroup.channels`).

    Call it on a copy: the model's layers are replaced by smaller ones.
    """
    import torch_pruning as tp

    if not channels:
        return
    inputs, forward = trace_call(example_inputs)
    with traceable(model):
        dg = tp.DependencyGraph().build_dependency(
            model, example_inputs=inputs, forward_fn=forward, customized_pruners=custom_pruners(model), verbose=False
        )
        for gid, idxs in channels.items():
            mod = model.get_submodule(gid)
            pruner = dg.get_pruner_of_module(mod)
            grp = groups.groups.get(gid) if groups is not None else None
            chans = grp.channels(list(idxs)) if grp is not None else sorted(idxs)
            dg.get_pruning_group(mod, pruner.prune_out_channels, chans).prune()


def shrink_heads_(model: nn.Module, groups: GroupAnalysis, heads: Mapping[str, list[int]]) -> dict[str, int]:
    """Replace each `nn.MultiheadAttention` whose heads `heads` (group id -> head indices) lists by a
    `SlimMultiheadAttention` without them, in place (call it on a copy). Returns heads removed per module."""
    from .heads import SlimMultiheadAttention, slimmable

    done: dict[str, int] = {}
    for gid, idx in heads.items():
        name = groups.groups[gid].producers[0]
        mha = model.get_submodule(name)
        if slimmable(mha):
            continue
        keep = [i for i in range(mha.num_heads) if i not in set(idx)]
        parent, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, leaf, SlimMultiheadAttention.from_mha(mha, keep))
        done[name] = len(idx)
    return done


def shrink_rnn_units_(model: nn.Module, groups: GroupAnalysis, units: Mapping[str, list[int]]) -> dict[str, int]:
    """Replace each recurrent module with pruned hidden units (`units`: group id ``name:l{layer}`` or
    ``name:l{layer}_reverse`` -> unit indices) by a `SlimRNN` over the kept units, in place (call it on a copy).
    Returns units removed per module."""
    from .rnn import SlimRNN, slimmable_rnn

    by_module: dict[str, dict[tuple[int, int], list[int]]] = {}
    for gid, idx in units.items():  # "name:l{layer}" or "name:l{layer}_reverse"
        name, _, tag = gid.rpartition(":l")
        layer, _, rev = tag.partition("_")
        by_module.setdefault(name, {})[(int(layer), int(rev == "reverse"))] = idx
    done: dict[str, int] = {}
    for name, per_layer in by_module.items():
        rnn = model.get_submodule(name)
        if slimmable_rnn(rnn):
            continue
        dirs = 2 if rnn.bidirectional else 1
        kept = [
            [u for u in range(rnn.hidden_size) if u not in set(per_layer.get((i, d), ()))]
            for i in range(rnn.num_layers)
            for d in range(dirs)
        ]
        parent, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, leaf, SlimRNN.from_rnn(rnn, kept))
        done[name] = sum(len(v) for v in per_layer.values())
    return done


# attribute names attention modules keep their head counts and widths under (Hugging Face and common code)
# (workbench.sparse.reader.SIZE_ATTRS lists them too, so an export records them and load restores them)
_QUERY_HEADS = ("num_heads", "num_attention_heads", "n_head", "n_heads")
_KV_HEADS = ("num_key_value_heads", "num_kv_heads", "n_kv_heads")
_WIDTHS = ("all_head_size", "inner_dim", "split_size")


def _is_stream_norm(mod: nn.Module) -> bool:
    w = getattr(mod, "weight", None)
    return (
        (isinstance(mod, nn.LayerNorm) or "norm" in type(mod).__name__.lower())
        and isinstance(w, Tensor)
        and w.dim() == 1
    )


def shrink_rule_groups_(model: nn.Module, groups: GroupAnalysis, found: Mapping[str, list[int]]) -> dict[str, int]:
    """Remove the root units `found` (group id -> indices) of module-tree rule groups (`workbench.rules`: attention
    heads, MLP neurons, hidden channels) in place (call it on a copy): every member slice is cut out of its parameter
    (a tied tensor once, under all its names), the norms on a cut hidden size adjusted to compute what they computed
    with those channels at zero (`workbench.sparse.norms`), each layer's
    size attributes follow its weight (``in_features``/``out_features``, Conv1D's ``nf``/``nx``), and an attention
    module's head counts and widths (``num_heads``, ``num_key_value_heads``, ``all_head_size``, ``split_size``, ...)
    follow the heads kept. Returns units removed per group.

    Layers may end with different head counts: the model's own forward works (Hugging Face attention reshapes with
    ``-1`` heads or reads the module's attributes), and its ``config`` keeps the original sizes.
    """
    from ..rules import find_attention, is_conv1d, norm_form
    from .norms import ZeroPaddedLayerNorm, rescale_rms_

    specs = {s.module: s for s in find_attention(model)[0]}  # as the model is now: head counts before the cut
    drop: dict[str, dict[int, set[int]]] = {}
    done: dict[str, int] = {}
    for gid, roots in found.items():
        g = groups.groups[gid]
        pruned = torch.zeros(g.size, dtype=torch.bool)
        pruned[list(roots)] = True
        for m in g.members:
            pos = m.index[pruned[m.root]]
            drop.setdefault(m.param, {}).setdefault(m.dim, set()).update(pos.tolist())
        done[gid] = len(roots)
    aliases: dict[int, list[str]] = {}  # a tied tensor is cut once and stays one tensor under every name
    for n, p in model.named_parameters(remove_duplicate=False):
        aliases.setdefault(id(p), []).append(n)
    norms = {}  # the hidden size's norms, how they compute, and their width before the cut
    if "hidden" in found:
        for m in groups.groups["hidden"].members:
            mod_name = m.param.rpartition(".")[0]
            mod = model.get_submodule(mod_name)
            if mod_name not in norms and _is_stream_norm(mod):
                norms[mod_name] = (norm_form(mod), int(mod.weight.shape[0]))
    touched: set[str] = set()
    for pname, dims in drop.items():
        mod_name, _, leaf = pname.rpartition(".")
        mod = model.get_submodule(mod_name)
        old = getattr(mod, leaf)
        t = old.detach()
        for dim, pos in dims.items():
            keep = torch.tensor([i for i in range(t.shape[dim]) if i not in pos], dtype=torch.long, device=t.device)
            t = t.index_select(dim, keep)
        new = nn.Parameter(t.clone(), requires_grad=old.requires_grad)
        for alias in aliases.get(id(old), [pname]):
            owner, _, local = alias.rpartition(".")
            setattr(model.get_submodule(owner), local, new)
            touched.add(owner)
    for mod_name in touched:
        mod = model.get_submodule(mod_name)
        if isinstance(mod, nn.Linear):
            mod.out_features, mod.in_features = mod.weight.shape
        elif is_conv1d(mod):  # weight is in x out
            mod.nx, mod.nf = mod.weight.shape
        elif isinstance(mod, nn.modules.conv._ConvNd) and mod.groups > 1:  # a depthwise conv inside an MLP
            mod.out_channels = mod.in_channels = mod.groups = mod.weight.shape[0]
        elif isinstance(mod, nn.modules.conv._ConvNd):  # a patch embedding, a conv stem reading the stream
            mod.out_channels, mod.in_channels = mod.weight.shape[:2]
        elif isinstance(mod, nn.Embedding):
            mod.embedding_dim = mod.weight.shape[1]
        elif mod_name in norms:
            form, before = norms[mod_name]
            after = int(mod.weight.shape[0])
            if form == "layer":
                kept = ZeroPaddedLayerNorm.cut(mod, torch.arange(after))  # its width before the cut is the full one
                parent, _, leaf = mod_name.rpartition(".")
                setattr(model.get_submodule(parent) if parent else model, leaf, kept)
            else:
                rescale_rms_(mod, before, after, form)
    for gid, roots in found.items():
        if not gid.endswith(":heads"):
            continue
        for name in groups.groups[gid].modules or (gid[: -len(":heads")],):
            s = specs.get(name)
            if s is None:
                continue
            att = model.get_submodule(name)
            kv = s.kv_heads - len(roots)
            rep = s.heads // s.kv_heads
            for attr in _QUERY_HEADS:
                if getattr(att, attr, None) == s.heads:
                    setattr(att, attr, kv * rep)
            for attr in _KV_HEADS:
                if getattr(att, attr, None) == s.kv_heads:
                    setattr(att, attr, kv)
            for attr in _WIDTHS:
                if getattr(att, attr, None) == s.heads * s.head_dim:
                    setattr(att, attr, kv * rep * s.head_dim)
    return done
