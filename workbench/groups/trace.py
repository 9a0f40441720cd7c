"""Torch-Pruning's dependency graph, turned into groups we can mask exactly (see `workbench.groups`)."""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import Tensor, nn

from .types import ChannelGroup, GroupAnalysis, Member

# grad_fn names (without "Backward<N>") of ops that act on each channel independently (or only move
# data within a channel), so a zero channel stays a zero channel and no channel mixes with another.
CHANNELWISE_OPS = frozenset(
    """Relu Relu6 Hardtanh LeakyRelu Elu Selu Celu Gelu Silu Mish Sigmoid Tanh Hardswish Hardsigmoid Softplus
    Add Sub Mul Div Neg Clone Alias NativeDropout Dropout FeatureDropout MaxPool1DWithIndices
    MaxPool2DWithIndices MaxPool3DWithIndices AvgPool1D AvgPool2D AvgPool3D AdaptiveAvgPool1D
    AdaptiveAvgPool2D AdaptiveAvgPool3D AdaptiveMaxPool1D AdaptiveMaxPool2D AdaptiveMaxPool3D Mean
    ConstantPadNd ReflectionPad1D ReflectionPad2D ReplicationPad1D ReplicationPad2D UpsampleNearest1D
    UpsampleNearest2D UpsampleBilinear2D Addmm Mm T Expand Contiguous NativeBatchNorm""".split()
)
# NativeBatchNorm as an op node is a batch norm inside a module Torch-Pruning maps to another op (timm's
# BatchNormAct2d: its output is the activation's): per channel in eval mode; its own parameters come from the module
# node (`custom_pruners`), and every consumer's input slice is in the group, so masking stays exact.
_NORM_EXACT = (nn.modules.batchnorm._BatchNorm,)
_NORM_INEXACT = (nn.LayerNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm)


def _op_name(node) -> str:
    m = re.search(r"\((\w+?)(Backward\d*)?\)$", node.name)
    return m.group(1) if m else node.name


def traced_output(out: Any) -> Any:
    """What Torch-Pruning traces back from: a tensor or a tuple of tensors as the model returns them; of a dict,
    ModelOutput or nested output (caches, hidden states) its predictions (`workbench.adapter.logits_of`)."""
    if isinstance(out, Tensor) or (isinstance(out, (list, tuple)) and all(isinstance(v, Tensor) for v in out)):
        return out
    from ..adapter import logits_of

    return logits_of(out)


def custom_pruners(model: nn.Module) -> dict[type, Any]:
    """Torch-Pruning pruners for subclasses of the layers it knows (it looks layers up by exact type): timm's
    ``BatchNormAct2d`` is a BatchNorm2d whose forward also applies the activation; without this its channels look
    like an unknown op ('NativeBatchNorm') and every conv before it loses structured pruning."""
    import torch_pruning as tp

    f = tp.pruner.function
    known = (
        (nn.modules.batchnorm._BatchNorm, f.BatchnormPruner),
        (nn.LayerNorm, f.LayernormPruner),
        (nn.GroupNorm, f.GroupNormPruner),
    )
    out: dict[type, Any] = {}
    exact = {nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.LayerNorm, nn.GroupNorm}
    for m in model.modules():
        if type(m) in exact or type(m) in out:
            continue
        for base, pruner in known:
            if isinstance(m, base):
                out[type(m)] = pruner()
                break
    return out


def _tp_groups(dg, model: nn.Module, names, claimed: set[str], analysis: GroupAnalysis) -> None:
    """Add Torch-Pruning's coupled groups to `analysis`, skipping channels a module-tree rule already covers."""
    params = {p: n for n, p in model.named_parameters()}
    shapes = {n: p.shape for n, p in model.named_parameters(remove_duplicate=False)}
    seen: set[nn.Module] = set()
    for mod in list(dg.module2node):
        if not isinstance(mod, (nn.Linear, nn.modules.conv._ConvNd)) or mod in seen or mod not in names:
            continue
        if names[mod] in claimed:
            continue  # its output channels are a rule's (heads, MLP neurons): no need to ask the graph
        pruner = dg.get_pruner_of_module(mod)
        n = pruner.get_out_channels(mod) if pruner is not None else None
        if not n:
            continue
        group = dg.get_pruning_group(mod, pruner.prune_out_channels, list(range(n)))
        members: list[Member] = []
        producers: list[str] = []
        reasons: list[str] = []
        grouped: list[tuple[str, int, int, Tensor, Tensor]] = []  # (name, groups, channels per group, idx, root)
        for item in group:
            dep, node = item.dep, item.dep.target
            out = dg.is_out_channel_pruning_fn(dep.handler)
            idx = torch.as_tensor(item.idxs, dtype=torch.long)
            root = torch.as_tensor(item.root_idxs, dtype=torch.long)
            target = node.module
            if isinstance(target, nn.modules.conv._ConvNd) and target.groups > 1 and target in names:
                if not target.groups == target.in_channels == target.out_channels:  # grouped, not depthwise
                    per = (target.out_channels if out else target.in_channels) // target.groups
                    grouped.append((names[target], target.groups, per, idx, root))
            if out and isinstance(target, (nn.Linear, nn.modules.conv._ConvNd)):
                seen.add(target)
            if out and not node.outputs:
                reasons.append(f"its channels are outputs of the model (at {names.get(target, node.name)!r})")
            if out and isinstance(target, (nn.Linear, nn.modules.conv._ConvNd)):
                producers.append(names[target])
            got = _members(target, names, params, node, out, idx, root)
            if isinstance(got, str):
                reasons.append(got)
            else:
                members.extend(got)
        gid = names[mod]
        if claimed.intersection(producers) or gid in analysis.groups:
            continue  # a module-tree rule covers these channels exactly
        size, blocks = n, 1
        if grouped and not reasons:
            size, blocks, why = _per_group_units(n, grouped)
            if why:
                reasons.append(why)
            else:
                members = [Member(m.param, m.dim, m.index, m.root % size, m.producer) for m in members]
        for m in members:  # Torch-Pruning's index mapping through split/concat can point past a tensor's end
            if m.index.numel() and (int(m.index.max()) >= shapes[m.param][m.dim] or int(m.root.max()) >= size):
                reasons.append(
                    f"Torch-Pruning maps its channels onto positions {int(m.index.max())} of {m.param!r} (size "
                    f"{shapes[m.param][m.dim]}) through a split/concat it does not follow exactly; structured pruning of it is not "
                    "supported yet"
                )
                break
        cg = ChannelGroup(gid, size, tuple(producers), tuple(members), "; ".join(dict.fromkeys(reasons)), blocks=blocks)
        analysis.groups[gid] = cg
        for p in producers:
            analysis.by_module.setdefault(p, []).append(gid)


def _per_group_units(n: int, grouped: list[tuple[str, int, int, Tensor, Tensor]]) -> tuple[int, int, str]:
    """``(units, blocks, why not)`` of a group of `n` channels through grouped convs: a grouped conv keeps as many
    channels in each of its groups, so (as Torch-Pruning does) a unit is one position inside a group, removed from
    every group at once: unit p is channels ``p, p + units, p + 2 * units, ...``."""
    blocks = {g for _, g, _, _, _ in grouped}
    name, g, per, _, _ = grouped[0]
    if len(blocks) > 1:
        return n, 1, f"its channels reach grouped convs with different numbers of groups ({sorted(blocks)})"
    if n % g or n // g != per:
        return n, 1, f"its {n} channels do not split into the {g} groups of grouped conv {name!r} one to one"
    for name, _, per, idx, root in grouped:
        if not torch.equal(idx % per, root % per):
            return (
                n,
                1,
                (
                    f"its channels reach grouped conv {name!r} in another order (through a concat or split): removing "
                    "the same positions from each of its groups is not supported there yet"
                ),
            )
    return n // g, g, ""


def _members(target, names, params, node, out: bool, idx: Tensor, root: Tensor) -> list[Member] | str:
    """Parameter slices for one dependency, or the reason it cannot be masked exactly."""
    if isinstance(target, nn.Parameter):
        name = params.get(target)
        if name is None:
            return "it reaches a tensor that is not a parameter of the model"
        return [Member(name, int(getattr(node, "pruning_dim", -1)) % target.dim(), idx, root)]
    if not isinstance(target, nn.Module):
        return ""  # unreachable with Torch-Pruning 1.x
    mname = names.get(target)
    if mname is None:  # an operator node (add, relu, cat, view, ...)
        kind = type(target).__name__
        if kind in ("_ConcatOp", "_SplitOp", "_ReshapeOp", "_SliceOp", "_UnbindOp"):
            return []
        op = _op_name(node)
        if op in CHANNELWISE_OPS:
            return []
        return f"its channels pass through {op!r}, which is not known to be channel-wise"
    pre = f"{mname}." if mname else ""
    if isinstance(target, nn.modules.conv._ConvNd):
        depthwise = target.groups == target.in_channels == target.out_channels
        dim_out, dim_in = (1, 0) if target.transposed else (0, 1)
        if target.groups > 1 and not depthwise and target.transposed:
            return f"grouped transposed conv {mname!r} (groups={target.groups}) has no structured rule yet"
        if out or depthwise:
            ms = [Member(f"{pre}weight", dim_out, idx, root, producer=out)]
            if target.bias is not None:
                ms.append(Member(f"{pre}bias", 0, idx, root))
            return ms
        if (
            target.groups > 1
        ):  # a grouped conv's weight holds in_channels / groups columns: channel c is column c % that
            return [Member(f"{pre}weight", dim_in, idx % (target.in_channels // target.groups), root)]
        return [Member(f"{pre}weight", dim_in, idx, root)]
    if isinstance(target, nn.Linear):
        if out:
            ms = [Member(f"{pre}weight", 0, idx, root, producer=True)]
            if target.bias is not None:
                ms.append(Member(f"{pre}bias", 0, idx, root))
            return ms
        return [Member(f"{pre}weight", 1, idx, root)]
    if isinstance(target, _NORM_EXACT):
        if not target.affine:
            return []
        return [Member(f"{pre}weight", 0, idx, root), Member(f"{pre}bias", 0, idx, root)]
    if isinstance(target, _NORM_INEXACT):
        return (
            f"{type(target).__name__} {mname!r} normalises over these channels, so zeroing them changes its "
            "statistics and a mask cannot match the shrunk model"
        )
    if isinstance(target, nn.Embedding) and out:
        return [Member(f"{pre}weight", 1, idx, root)]
    if isinstance(target, nn.PReLU) and target.num_parameters > 1:
        return [Member(f"{pre}weight", 0, idx, root)]
    return f"it reaches {type(target).__name__} {mname!r}, which has no structured rule yet"
