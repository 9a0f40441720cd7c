"""Network slimming (Liu et al. 2017): a channel is as important as the |gamma| of the BatchNorm that scales it.

A conv (or linear) layer whose output goes straight into a BatchNorm gets that BatchNorm's |gamma_o| on every
weight of its filter (neuron) o, so ``granularity="filter"`` removes the channels with the smallest scale; a
BatchNorm target is scored by its own |gamma|. The BatchNorm after each layer is found by tracing the model
with torch.fx (the layer's only user must be a BatchNorm module); models fx cannot trace fall back to the
next module in the same `nn.Sequential`. Layers without a BatchNorm after them raise a `CriterionError`:
exclude them from the plan (e.g. ``include=["features.*"]``) or score them by another criterion.

The paper's training-time L1 penalty on gamma (which makes this criterion sharp) is a training procedure,
not a score; see `workbench.training`.

>>> import torch, workbench as wb
>>> model = torch.nn.Sequential(
...     torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(36, 2)
... )
>>> with torch.no_grad():
...     _ = model[1].weight.copy_(torch.tensor([0.5, -2.0, 0.1, 1.0]))
>>> bench = wb.Workbench(model, [(torch.randn(2, 1, 5, 5), torch.zeros(2, dtype=torch.long))])
>>> _ = bench.apply(wb.Plan({"0": wb.LayerPlan(0.5, "filter", "bn_scale")}), evaluate=False)
>>> (model[0].weight.flatten(1) != 0).any(1).tolist()  # |gamma| 0.5 and 0.1 go
[False, True, False, True]
"""

from __future__ import annotations

import itertools

from torch import Tensor, nn

from .._caches import symbolic_trace
from ..errors import CriterionError
from ._registry import ScoreContext, register_criterion

__all__ = ["following_norms"]

_BN = nn.modules.batchnorm._BatchNorm


def following_norms(model: nn.Module) -> dict[str, str]:
    """Layer name -> name of the BatchNorm its output goes straight into (only user), for conv/linear layers."""
    modules = dict(model.named_modules())
    out: dict[str, str] = {}
    try:
        gm = symbolic_trace(model)
    except Exception:  # untraceable models: adjacent modules of a Sequential
        for pname, parent in modules.items():
            if isinstance(parent, nn.Sequential):
                kids = list(parent.named_children())
                for (a, ma), (b, mb) in itertools.pairwise(kids):
                    if isinstance(mb, _BN) and isinstance(ma, (nn.modules.conv._ConvNd, nn.Linear)):
                        out[f"{pname}.{a}" if pname else a] = f"{pname}.{b}" if pname else b
        return out
    gmods = dict(gm.named_modules())
    for node in gm.graph.nodes:
        if node.op != "call_module" or not isinstance(gmods.get(node.target), (nn.modules.conv._ConvNd, nn.Linear)):
            continue
        users = list(node.users)
        if len(users) == 1 and users[0].op == "call_module" and isinstance(gmods.get(users[0].target), _BN):
            if out.get(node.target, users[0].target) != users[0].target:  # called twice, into different norms
                out[node.target] = ""
            else:
                out[node.target] = users[0].target
    return {k: v for k, v in out.items() if v}


@register_criterion(
    "bn_scale", reference="Liu et al. 2017, Learning efficient convolutional networks through network slimming"
)
def bn_scale(weight: Tensor, ctx: ScoreContext) -> Tensor:
    """|gamma| of the BatchNorm right after a conv/linear layer, on every weight of the channel it scales."""
    module = ctx.module if ctx.module is not None else (ctx.model.get_submodule(ctx.target) if ctx.model else None)
    if isinstance(module, _BN):
        if module.weight is None:
            raise CriterionError(f"criterion 'bn_scale' cannot score {ctx.target!r}: its BatchNorm has no gamma")
        return weight.abs().float()  # a BatchNorm target: its own |gamma|
    if ctx.model is None:
        raise CriterionError(f"criterion 'bn_scale' needs the model to find the BatchNorm after {ctx.target!r}")
    key = "bn_scale:following"
    follow = ctx.cache.get(key)
    if follow is None:
        follow = ctx.cache[key] = following_norms(ctx.model)
    bn_name = follow.get(ctx.target)
    if bn_name is None:
        raise CriterionError(
            f"criterion 'bn_scale' scores a layer by the |gamma| of the BatchNorm right after it, but {ctx.target!r} "
            f"({type(module).__name__}) is not followed by one; exclude it from the plan (e.g. include only the convs "
            "followed by BatchNorm) or use 'l1' for it"
        )
    bn = ctx.model.get_submodule(bn_name)
    if bn.weight is None:
        raise CriterionError(
            f"criterion 'bn_scale': the BatchNorm {bn_name!r} after {ctx.target!r} has no gamma (affine=False)"
        )
    gamma = bn.weight.detach().abs().float().to(weight.device)
    transposed = isinstance(module, nn.modules.conv._ConvTransposeNd)
    dim = 1 if transposed else 0
    if (transposed and module.groups != 1) or weight.shape[dim] != gamma.numel():
        raise CriterionError(
            f"criterion 'bn_scale': {ctx.target!r} has {weight.shape[dim]} output channels per weight slice but the "
            f"BatchNorm {bn_name!r} after it has {gamma.numel()}; use 'l1' for this layer"
        )
    shape = [1] * weight.dim()
    shape[dim] = -1
    return gamma.reshape(shape).expand(weight.shape).clone()
