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

from ..groups import GroupAnalysis

__all__ = ["count_params", "prunable_channels", "shrink_", "shrink_heads_", "shrink_rnn_units_", "traceable"]


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
) -> dict[str, list[int]]:
    """Per supported group id of this `unit` ("channel" or "head"), the root units whose every member slice is
    pruned.

    `params` must hold every name a group uses, tied tensors under each module's name
    (``dict(model.named_parameters(remove_duplicate=False))``; plain `named_parameters()` lists a tied tensor
    once). `masks` (True = pruned) say what is pruned; without them a slice counts as pruned when it is all zero.
    At least one unit of each group is kept.
    """
    out: dict[str, list[int]] = {}
    for gid, grp in groups.groups.items():
        if not grp.supported or not grp.members or grp.unit != unit:
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


def shrink_(model: nn.Module, example_inputs: Tensor | Sequence[Tensor], channels: Mapping[str, list[int]]) -> None:
    """Remove `channels` (group root name -> root channel indices) from `model` in place with Torch-Pruning.

    Call it on a copy: the model's layers are replaced by smaller ones.
    """
    import torch_pruning as tp

    if not channels:
        return
    inputs = tuple(example_inputs) if isinstance(example_inputs, (list, tuple)) else (example_inputs,)
    with traceable(model):
        dg = tp.DependencyGraph().build_dependency(
            model, example_inputs=inputs, forward_fn=lambda m, x: m(*x), verbose=False
        )
        for gid, idxs in channels.items():
            mod = model.get_submodule(gid)
            pruner = dg.get_pruner_of_module(mod)
            dg.get_pruning_group(mod, pruner.prune_out_channels, sorted(idxs)).prune()


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
