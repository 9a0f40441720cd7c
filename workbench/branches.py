"""Residual branches: the units of the ``layer`` granularity.

A residual block computes ``y = f(x) + s(x)``. Removing the branch ``f`` leaves ``y = s(x)``, the network stays
connected, and the block becomes (for an identity shortcut) the identity. The workbench finds such branches with
`torch.fx`: for every addition of two tensors, the *branch* of one input is the set of graph nodes that feed it
and nothing else (not the other input, not any other consumer). It is a ``layer`` unit when

- it holds parameters (the input with more parameters is the branch; an identity or projection shortcut stays),
- its nodes are used only inside it and by the addition, and
- it ends in a module whose output is exactly zero when its weight and bias are zero (Linear, Conv, an affine
  BatchNorm/LayerNorm/GroupNorm), possibly followed by zero-preserving ops (ReLU, Dropout, Identity, reshapes).

Masking every parameter of the branch's modules then makes the addition return ``s(x)`` exactly: the masked
model computes what the model without the branch computes (tested), and `workbench.sparse.compile`'s shrink
removes the branch from the graph. Models that torch.fx cannot trace have no ``layer`` units; the reason is kept
(`find_branches` returns it).

>>> import torch, workbench as wb
>>> model = wb.demo.build("digits-resnet")
>>> branches, why = find_branches(model)
>>> [(b.id, b.modules) for b in branches]   # doctest: +NORMALIZE_WHITESPACE
[('layer1', ('layer1.conv1', 'layer1.bn1', 'layer1.conv2', 'layer1.bn2')),
 ('layer2', ('layer2.conv1', 'layer2.bn1', 'layer2.conv2', 'layer2.bn2'))]
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import torch
from torch import nn

from ._caches import symbolic_trace

__all__ = ["Branch", "dead_branches", "find_branches", "remove_branches"]

_ADDS = {operator.add, operator.iadd, torch.add}
_ZERO_KEEPING_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Dropout, nn.Dropout2d, nn.Identity, nn.Flatten)
_ZERO_KEEPING_FUNCTIONS = {torch.relu, torch.nn.functional.relu, torch.nn.functional.dropout, torch.flatten}
_ZERO_KEEPING_METHODS = {"relu", "relu_", "contiguous", "view", "reshape", "flatten"}
_ZEROABLE = (nn.Linear, nn.modules.conv._ConvNd, nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)


@dataclass(frozen=True)
class Branch:
    """One removable residual branch: `modules` (dotted names, in graph order) and their `params` (full
    names); `id` is the modules' common prefix (or the addition's node name); `skip` names the other input."""

    id: str
    modules: tuple[str, ...]
    params: tuple[str, ...]
    skip: str
    add: str

    def to_dict(self) -> dict:
        return {"id": self.id, "modules": list(self.modules), "params": list(self.params), "skip": self.skip}


def _zeroable_end(node, modules: dict[str, nn.Module]) -> bool:
    """Whether `node`'s value is exactly zero once the parameters of the module it ends in are zero."""
    while True:
        if node.op == "call_module":
            m = modules[node.target]
            if isinstance(m, _ZEROABLE):
                affine = getattr(m, "affine", getattr(m, "elementwise_affine", True))
                return bool(affine) and getattr(m, "weight", None) is not None
            if not isinstance(m, _ZERO_KEEPING_MODULES):
                return False
        elif node.op == "call_function" and node.target in _ZERO_KEEPING_FUNCTIONS:
            pass
        elif node.op == "call_method" and node.target in _ZERO_KEEPING_METHODS:
            pass
        else:
            return False
        inputs = node.all_input_nodes
        if len(inputs) != 1:
            return False
        node = inputs[0]


def _prefix(names: list[str]) -> str:
    parts = [n.split(".") for n in names]
    common = []
    for level in zip(*parts):
        if len(set(level)) != 1:
            break
        common.append(level[0])
    return ".".join(common)


def find_branches(model: nn.Module) -> tuple[list[Branch], str]:
    """The removable residual branches of `model` and, when there are none because tracing failed, why.

    The model is traced symbolically (no forward pass; nothing about it changes)."""
    try:
        graph = symbolic_trace(model).graph
    except Exception as e:  # data-dependent control flow, unsupported ops, ...
        return [], f"torch.fx cannot trace the model, so residual branches are unknown ({type(e).__name__}: {e})"
    modules = dict(model.named_modules())
    owner: dict[int, list[str]] = {}
    for name, mod in modules.items():
        for p in mod.parameters(recurse=False):
            owner.setdefault(id(p), []).append(name)
    calls: dict[str, int] = {}
    for n in graph.nodes:
        if n.op == "call_module":
            calls[n.target] = calls.get(n.target, 0) + 1
    ancestors: dict = {}
    for n in graph.nodes:
        anc: set = set()
        for i in n.all_input_nodes:
            anc |= ancestors[i]
            anc.add(i)
        ancestors[n] = anc
    out: list[Branch] = []
    taken: set[str] = set()
    for n in graph.nodes:
        if not (n.op == "call_function" and n.target in _ADDS) and not (
            n.op == "call_method" and n.target in ("add", "add_")
        ):
            continue
        args = [a for a in n.args[:2] if isinstance(a, torch.fx.Node)]
        if len(args) != 2:
            continue
        best = None
        for main, skip in ((args[0], args[1]), (args[1], args[0])):
            own = (ancestors[main] | {main}) - (ancestors[skip] | {skip})
            if not all(u in own or u is n for x in own for u in x.users):
                continue  # something outside uses the branch's values
            names = [x.target for x in own if x.op == "call_module"]
            if any(calls[t] > 1 for t in names):
                continue  # a module called elsewhere too
            mods = [t for t in names if any(True for _ in modules[t].parameters(recurse=False))]
            params = [
                f"{t}.{pn}"
                for t in mods
                for pn, p in modules[t].named_parameters(recurse=False)
                if len(owner[id(p)]) == 1
            ]
            if not params or not _zeroable_end(main, modules):
                continue
            size = sum(model.get_parameter(pn).numel() for pn in params)
            if best is None or size > best[0]:
                order = [x.target for x in graph.nodes if x in own and x.op == "call_module" and x.target in mods]
                best = (size, tuple(order), tuple(params), skip.name)
        if best is None or taken & set(best[1]):
            continue
        taken |= set(best[1])
        prefix = _prefix(list(best[1]))
        out.append(
            Branch(
                prefix if prefix and prefix not in {b.id for b in out} else n.name, best[1], best[2], best[3], n.name
            )
        )
    return out, ""


def dead_branches(model: nn.Module, branches, masks=None) -> list[Branch]:
    """The branches whose every parameter is masked (`masks`, True = pruned) or, without masks, all zero."""
    params = dict(model.named_parameters())
    out = []
    for b in branches:
        if not all(p in params for p in b.params):
            continue
        if masks is not None:
            dead = all(p in masks and bool(masks[p].all()) for p in b.params)
        else:
            dead = all(not bool(params[p].detach().any()) for p in b.params)
        if dead:
            out.append(b)
    return out


def remove_branches(model: nn.Module, branches) -> nn.Module:
    """A `torch.fx.GraphModule` computing `model` without `branches`: each addition returns its skip input and
    the branch's modules are gone (a new module; `model` is not changed). Equal to the masked model when the
    branches' parameters are all zero."""
    gm = torch.fx.symbolic_trace(model)
    nodes = {n.name: n for n in gm.graph.nodes}
    for b in branches:
        add, skip = nodes.get(b.add), nodes.get(b.skip)
        if add is None or skip is None:
            raise ValueError(f"branch {b.id!r} was found on another graph (no node {b.add!r} / {b.skip!r} here)")
        add.replace_all_uses_with(skip)
        gm.graph.erase_node(add)
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.recompile()
    gm._workbench_removed_branches = [  # so `workbench.sparse.load` can cut the same branches from a fresh model
        *getattr(model, "_workbench_removed_branches", []),
        *(b.id for b in branches),
    ]
    return gm
