"""Connectivity: which connections survive in a layer, which units are dead, and how many input-to-output
paths survive through the network (log scale), before vs after pruning.

Per layer the weight is reduced to an out x in matrix of connection strengths (a conv kernel's L1 norm, an
LSTM's four gates summed per hidden unit, attention's q/k/v stacked rows), with the pruned connections
(every weight of the kernel masked). "Before" is the layer as it was dense, rebuilt from the mask store's
undo log, so no copy of the model is kept.

Path counts propagate a per-unit count of surviving paths from the input through the traced graph
(torch.fx): a linear/conv multiplies by its surviving adjacency, an add sums, a concat stacks, channel-wise
ops pass counts through; a BatchNorm whose channel is zeroed (gamma = beta = 0) cuts it. Counts are kept as
natural logs (they overflow float64 quickly); `log10_paths` reports them in decimal orders of magnitude.
Graphs with ops the propagation does not know report the layers reached before them.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.fx as fx
from torch import Tensor, nn

from ..errors import TargetError
from ..evaluate import eval_mode, model_device, to_device
from ..state import as_state

__all__ = ["ConnectivityResult", "PathResult", "connectivity", "dense_param", "paths"]


def dense_param(state, name: str) -> Tensor:
    """Parameter `name` as it was before the applied pruning steps (a new tensor)."""
    p = state.model.get_parameter(name).detach().clone()
    store = state.store
    for step in reversed(store.steps[: store.position]):
        d = step.deltas.get(name)
        if d is not None:
            p.masked_scatter_(d.mask().to(p.device), d.values.to(p.device))
    return p


def _matrix(module: nn.Module, tensors: dict[str, Tensor]) -> Tensor:
    """out x in connection strength (|w|, kernels reduced by L1) of a layer's weights."""
    if isinstance(module, nn.RNNBase):
        w = tensors["weight_ih_l0"].abs()
        gates = w.shape[0] // module.hidden_size
        return w.reshape(gates, module.hidden_size, -1).sum(0)
    w = next(iter(tensors.values())).abs()
    if w.dim() == 1:
        return w[:, None]
    if isinstance(module, nn.modules.conv._ConvNd) and module.transposed:
        w = w.transpose(0, 1)
    if isinstance(module, nn.Embedding):
        w = w.T
    return w.reshape(w.shape[0], w.shape[1], -1).sum(2) if w.dim() > 2 else w


@dataclass(frozen=True)
class ConnectivityResult:
    """`weight`/`before`: out x in connection strength now / dense; `pruned`: connections fully removed;
    `dead_out`/`dead_in`: units with no surviving connection (rows / columns)."""

    layer: str
    weight: np.ndarray
    before: np.ndarray
    pruned: np.ndarray
    dead_out: np.ndarray
    dead_in: np.ndarray

    @property
    def surviving(self) -> float:
        return 1.0 - float(self.pruned.mean())

    def to_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "weight": self.weight.tolist(),
            "before": self.before.tolist(),
            "pruned": self.pruned.tolist(),
            "dead_out": self.dead_out.tolist(),
            "dead_in": self.dead_in.tolist(),
        }


def connectivity(state, layer: str) -> ConnectivityResult:
    """Surviving connections of target `layer` now vs dense."""
    state = as_state(state)
    t = state.targets[layer]
    if t.tied_to:
        raise TargetError(f"{layer!r} shares its weights with {t.tied_to!r}; ask for {t.tied_to!r}")
    module = state.model.get_submodule(t.name)
    local = dict(zip(t.params, t.param_names()))
    with torch.no_grad():
        now = _matrix(module, {k: state.model.get_parameter(v).detach() for k, v in local.items()}).double()
        before = _matrix(module, {k: dense_param(state, v) for k, v in local.items()}).double()
    pruned = (now == 0) & (before != 0)
    alive = now != 0
    return ConnectivityResult(
        layer=t.name,
        weight=now.cpu().numpy(),
        before=before.cpu().numpy(),
        pruned=pruned.cpu().numpy(),
        dead_out=(~alive.any(1)).cpu().numpy(),
        dead_in=(~alive.any(0)).cpu().numpy(),
    )


@dataclass(frozen=True)
class PathResult:
    """Per layer (in graph order): log10 of the number of surviving input-to-output paths reaching its
    outputs, now and dense. `stopped` names the op where propagation stopped, if it did."""

    layers: tuple[str, ...]
    log10_paths: np.ndarray
    log10_paths_dense: np.ndarray
    stopped: str = ""
    notes: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "layers": list(self.layers),
            "log10_paths": self.log10_paths.tolist(),
            "log10_paths_dense": self.log10_paths_dense.tolist(),
            "stopped": self.stopped,
        }


_PASS_MODULES = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.GELU,
    nn.SiLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.ELU,
    nn.Hardswish,
    nn.Dropout,
    nn.Identity,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
)
_PASS_FUNCS = {
    torch.relu,
    torch.nn.functional.relu,
    torch.sigmoid,
    torch.tanh,
    torch.nn.functional.gelu,
    torch.nn.functional.dropout,
    torch.nn.functional.max_pool2d,
    torch.nn.functional.avg_pool2d,
    torch.nn.functional.adaptive_avg_pool2d,
}
_PASS_METHODS = {"relu", "sigmoid", "tanh", "contiguous", "mean"}


def _logmatvec(adj: Tensor, v: Tensor) -> Tensor:
    """log(A @ exp(v)) for a 0/1 matrix A [out, in] and log counts v [in] (-inf = no path)."""
    la = torch.where(adj, torch.zeros((), dtype=torch.float64), torch.tensor(-math.inf, dtype=torch.float64))
    return torch.logsumexp(la + v[None, :], dim=1)


def _propagate(gm: fx.GraphModule, shapes: dict[fx.Node, tuple], adjacency) -> tuple[dict[str, Tensor], str]:
    mods = dict(gm.named_modules())
    vec: dict[fx.Node, Tensor] = {}
    reached: dict[str, Tensor] = {}
    for n in gm.graph.nodes:
        if n.op == "placeholder":
            shp = shapes.get(n)
            if shp is None:
                return reached, "an input whose shape is unknown"
            units = shp[1] if len(shp) >= 3 else shp[-1]
            vec[n] = torch.zeros(units, dtype=torch.float64)
            continue
        if n.op == "output":
            break
        if n not in shapes:  # not a tensor (a shape, a size, a tuple of outputs): nothing to count
            continue
        ins = [a for a in n.all_input_nodes if a in vec]
        if n.op == "call_module":
            m = mods[n.target]
            src = vec.get(n.args[0]) if n.args and isinstance(n.args[0], fx.Node) else None
            if src is None:
                return reached, f"module {n.target!r} (input not traced)"
            if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd)):
                adj = adjacency(n.target, m)
                if adj.shape[1] != src.numel():
                    if adj.shape[1] % src.numel() == 0 and isinstance(m, nn.Linear):
                        src = src.repeat_interleave(adj.shape[1] // src.numel())  # a flatten of C x H x W
                    else:
                        return reached, f"{n.target!r} (its inputs do not line up with the traced channels)"
                vec[n] = _logmatvec(adj, src)
                reached[n.target] = vec[n]
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                v = src.clone()
                if m.affine:
                    v[(m.weight == 0) & (m.bias == 0)] = -math.inf
                vec[n] = v
            elif isinstance(m, nn.Flatten):
                shp = shapes.get(n.args[0])
                spatial = int(np.prod(shp[2:])) if shp is not None and len(shp) > 2 else 1
                vec[n] = src.repeat_interleave(spatial)
            elif isinstance(m, _PASS_MODULES):
                vec[n] = src
            else:
                return reached, f"module {n.target!r} ({type(m).__name__})"
        elif n.op == "call_function" and n.target in (operator.add, torch.add) and len(ins) == 2:
            a, b = (vec[x] for x in ins)
            vec[n] = torch.logaddexp(a, b) if a.shape == b.shape else a
        elif n.op == "call_function" and n.target in (operator.add, operator.mul, torch.add) and len(ins) == 1:
            vec[n] = vec[ins[0]]
        elif n.op == "call_function" and n.target is torch.cat:
            parts = [vec.get(a) for a in n.args[0]]
            dim = n.kwargs.get("dim", n.args[1] if len(n.args) > 1 else 0)
            if any(p is None for p in parts) or dim != 1:
                return reached, "a concat not along channels"
            vec[n] = torch.cat(parts)
        elif n.op == "call_function" and n.target is torch.flatten:
            shp = shapes.get(n.args[0])
            spatial = int(np.prod(shp[2:])) if shp is not None and len(shp) > 2 else 1
            vec[n] = vec[ins[0]].repeat_interleave(spatial)
        elif (n.op == "call_function" and n.target in _PASS_FUNCS) or (
            n.op == "call_method" and n.target in _PASS_METHODS
        ):
            vec[n] = vec[ins[0]]
        elif n.op == "call_method" and n.target in ("view", "reshape", "flatten"):
            shp, out = shapes.get(n.args[0]), shapes.get(n)
            if shp is None or out is None or len(out) != 2:
                return reached, f"a {n.target} the propagation cannot follow"
            spatial = int(np.prod(shp[2:])) if len(shp) > 2 else 1
            vec[n] = vec[ins[0]].repeat_interleave(spatial)
        elif n.op == "get_attr":
            continue
        else:
            return reached, f"{n.op} {getattr(n.target, '__name__', n.target)!s}"
    return reached, ""


def paths(state) -> PathResult:
    """Surviving input-to-output path counts per layer (log10), now and dense; see the module docstring."""
    state = as_state(state)
    model = state.model
    if state.example_inputs is None:
        raise TargetError("path counts need example inputs: create the Workbench with data or example_inputs")
    try:
        gm = fx.symbolic_trace(model)
    except Exception as e:  # fx cannot trace every model
        return PathResult((), np.zeros(0), np.zeros(0), f"the model cannot be traced by torch.fx ({type(e).__name__})")
    shapes: dict[fx.Node, tuple] = {}
    x = to_device(state.example_inputs, model_device(model))
    with eval_mode(model), torch.inference_mode():
        interp = fx.Interpreter(gm, garbage_collect_values=False)
        interp.run(*(x if isinstance(x, (list, tuple)) else (x,)))
        for n, v in interp.env.items():
            if isinstance(v, Tensor):
                shapes[n] = tuple(v.shape)

    def adjacency(dense: bool):
        def adj(name: str, m: nn.Module) -> Tensor:
            w = dense_param(state, f"{name}.weight") if dense else m.weight.detach()
            a = w.abs().reshape(w.shape[0], w.shape[1], -1).sum(2) != 0 if w.dim() > 2 else w != 0
            if isinstance(m, nn.modules.conv._ConvNd) and m.groups > 1:  # block-diagonal in/out
                cin_g, out_g = m.in_channels // m.groups, m.out_channels // m.groups
                full = torch.zeros(m.out_channels, m.in_channels, dtype=torch.bool)
                for g in range(m.groups):
                    full[g * out_g : (g + 1) * out_g, g * cin_g : (g + 1) * cin_g] = a[g * out_g : (g + 1) * out_g]
                a = full
            return a.cpu()

        return adj

    with torch.no_grad():
        now, stopped = _propagate(gm, shapes, adjacency(False))
        dense, _ = _propagate(gm, shapes, adjacency(True))
    layers = tuple(now)
    ln10 = math.log(10)
    return PathResult(
        layers=layers,
        log10_paths=np.array([float(torch.logsumexp(now[k], 0)) / ln10 for k in layers]),
        log10_paths_dense=np.array([float(torch.logsumexp(dense[k], 0)) / ln10 for k in layers]),
        stopped=stopped,
    )
