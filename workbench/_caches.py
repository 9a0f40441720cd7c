"""What a forward pass may leave on a model's modules, and putting it back.

Some models cache on their first call (LeViT/EfficientFormer keep their gathered attention biases in a dict): a
cache written during the workbench's own analyses would hold an autograd graph (breaking `copy.deepcopy`) or a
torch.fx Proxy (breaking the next forward), and would leave the model changed. Analyses that run or trace the model
take a snapshot first and restore it after, also when they fail.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["restore_caches", "snapshot_caches", "symbolic_trace"]


def snapshot_caches(model: nn.Module) -> dict[tuple[nn.Module, str], Any]:
    """Plain tensor attributes (not parameters or buffers) of every module and dicts of tensors (caches), as now."""
    out: dict[tuple[nn.Module, str], Any] = {}
    for m in model.modules():
        for k, v in vars(m).items():
            if isinstance(v, Tensor):
                out[(m, k)] = v
            elif isinstance(v, dict) and not k.startswith("_"):
                out[(m, k)] = dict(v)
    return out


def restore_caches(model: nn.Module, before: dict[tuple[nn.Module, str], Any]) -> None:
    """Undo what a forward pass cached on the modules (some models keep attention biases computed on their first
    call, as a tensor or in a dict): a cached tensor from the trace would hold its autograd graph and break
    `copy.deepcopy` of the model; one from torch.fx's symbolic trace is a Proxy that breaks the next forward."""
    from torch.fx import Proxy

    for m in model.modules():
        for k, v in list(vars(m).items()):
            old = before.get((m, k))
            if isinstance(v, (Tensor, Proxy)) and old is not v:
                if (m, k) in before:
                    setattr(m, k, old)
                else:
                    delattr(m, k)
            elif isinstance(v, dict) and not k.startswith("_"):
                kept = old if isinstance(old, dict) else {}
                if set(v) != set(kept) or any(v[key] is not val for key, val in kept.items()):
                    v.clear()
                    v.update(kept)


def symbolic_trace(model: nn.Module) -> torch.fx.GraphModule:
    """`torch.fx.symbolic_trace` that leaves no Proxy cached on the model's modules."""
    cached = snapshot_caches(model)
    try:
        return torch.fx.symbolic_trace(model)
    finally:
        restore_caches(model, cached)
