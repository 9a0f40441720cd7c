"""Coupled channel groups as plain data: which parameter slices each root channel owns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor


@dataclass(frozen=True)
class Member:
    """Positions `index` along `dim` of parameter `param` belong to root channels `root`."""

    param: str
    dim: int
    index: Tensor
    root: Tensor
    producer: bool = False  # an output-channel slice of a conv/linear weight: used to score the channel


@dataclass(frozen=True)
class ChannelGroup:
    """Channels that must be pruned together; `size` root channels, `producers` the layers whose outputs
    they are (their filters/neurons), `members` every parameter slice they touch."""

    id: str
    size: int
    producers: tuple[str, ...]
    members: tuple[Member, ...]
    reason: str = ""  # non-empty: this group cannot be masked exactly, and why
    unit: str = "channel"  # "channel" (filters/neurons, removable by Torch-Pruning), "head" or "lstm-unit"
    origin: str = "trace"  # "trace" (Torch-Pruning's graph), "rules" (workbench.rules: sliced by its members) or "own"
    blocks: int = 1  # through grouped convs: unit p is channel p of each of `blocks` equal blocks (`channels`)
    modules: tuple[str, ...] = ()  # head groups spanning several attention modules (T5's stacks): their names

    def channels(self, units: list[int]) -> list[int]:
        """The root module's output channels that root units `units` stand for."""
        return sorted(p + k * self.size for k in range(self.blocks) for p in units)

    @property
    def supported(self) -> bool:
        return not self.reason

    def masks(self, pruned: Tensor, shapes: dict[str, torch.Size]) -> dict[str, Tensor]:
        """Boolean masks (True = remove) for the root channels flagged in `pruned` (bool, [size])."""
        out: dict[str, Tensor] = {}
        for m in self.members:
            pos = m.index[pruned[m.root]]
            if pos.numel() == 0:
                continue
            mask = out.get(m.param)
            if mask is None:
                mask = out[m.param] = torch.zeros(shapes[m.param], dtype=torch.bool)
            mask.index_fill_(m.dim, pos, True)
        return out


@dataclass
class GroupAnalysis:
    """All groups of a model and, per module name, the ids of the groups it produces channels for."""

    groups: dict[str, ChannelGroup] = field(default_factory=dict)
    by_module: dict[str, list[str]] = field(default_factory=dict)
    error: str = ""  # tracing failed as a whole: no filter/neuron pruning on this model, and why (heads and
    # recurrent units have rules of their own and stay available)
    branches: dict[str, Any] = field(default_factory=dict)  # residual branches (`workbench.branches.Branch`) by id
    branches_of: dict[str, list[str]] = field(default_factory=dict)  # module name -> ids of branches holding it
    branch_error: str = ""  # why there are no branches when torch.fx could not trace the model
    refused: dict[str, str] = field(default_factory=dict)  # modules that look like attention but fit no rule, and why
    hidden_error: str = ""  # why a transformer has no 'hidden' group (empty: it has one, or it is no transformer)
