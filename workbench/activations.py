"""Capturing per-unit activations of named layers on calibration data, without leaving hooks behind.

The model is traced with torch.fx and run by an interpreter that records the outputs of the named modules
(and of the ReLU that follows each, for APoZ). Models fx cannot trace fall back to forward hooks that are
removed in a `finally`, so none survives the call, even on error.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import Tensor, nn

from ._caches import symbolic_trace
from .adapter import size
from .evaluate import batches, call, eval_mode

__all__ = ["UnitStats", "histogram_entropy", "unit_stats", "units_of"]

_RELU_FUNCS = {F.relu, torch.relu, torch.nn.functional.relu}


def units_of(module: nn.Module, out: Tensor) -> Tensor:
    """[N, units]: the output pooled over everything but samples and units (conv/BN channels: dim 1;
    everything else, e.g. Linear on sequences, LSTM, attention: the last dim)."""
    if isinstance(out, (tuple, list)):
        out = out[0]
    if isinstance(module, (nn.modules.conv._ConvNd, nn.modules.batchnorm._BatchNorm)) and out.dim() >= 3:
        return out.transpose(0, 1).reshape(out.shape[1], out.shape[0], -1).mean(2).T
    if out.dim() == 1:
        return out[:, None]
    return out.reshape(out.shape[0], -1, out.shape[-1]).mean(1) if out.dim() > 2 else out


def _zero_share(module: nn.Module, out: Tensor) -> tuple[Tensor, int]:
    """(count of zeros per unit, positions per unit) of a post-ReLU output."""
    if isinstance(out, (tuple, list)):
        out = out[0]
    conv = isinstance(module, (nn.modules.conv._ConvNd, nn.modules.batchnorm._BatchNorm)) and out.dim() >= 3
    z = (out == 0).transpose(0, 1).reshape(out.shape[1], -1) if conv else (out == 0).reshape(-1, out.shape[-1]).T
    return z.sum(1).double(), z.shape[1]


@dataclass
class UnitStats:
    """Per named layer: pooled unit activations [N, units] (float64, CPU) and the share of zeros after the
    layer's ReLU per unit (APoZ; on relu(output) when no ReLU follows the layer)."""

    pooled: dict[str, Tensor]
    apoz: dict[str, Tensor]
    relu_found: dict[str, bool]
    n: int


def _relu_after(node: fx.Node, modules: dict[str, nn.Module]) -> fx.Node | None:
    """The ReLU applied to `node`, possibly after one BatchNorm (conv -> BN -> ReLU)."""
    for _ in range(2):
        users = list(node.users)
        if len(users) != 1:
            return None
        u = users[0]
        if (u.op == "call_function" and u.target in _RELU_FUNCS) or (u.op == "call_method" and u.target == "relu"):
            return u
        if u.op == "call_module" and isinstance(modules.get(u.target), nn.ReLU):
            return u
        if u.op == "call_module" and isinstance(modules.get(u.target), nn.modules.batchnorm._BatchNorm):
            node = u
            continue
        return None
    return None


def unit_stats(model: nn.Module, data: Iterable, names: Sequence[str]) -> UnitStats:
    """Run `model` over `data` in eval mode (no gradients) and collect unit statistics of `names`."""
    modules = dict(model.named_modules())
    pooled: dict[str, list[Tensor]] = {n: [] for n in names}
    zeros: dict[str, Tensor] = {}
    counts: dict[str, int] = {}
    relu_found: dict[str, bool] = {}
    n = 0

    def record(name: str, out: Tensor, post: Tensor | None) -> None:
        pooled[name].append(units_of(modules[name], out).double().cpu())
        post = post if post is not None else torch.relu(out[0] if isinstance(out, (tuple, list)) else out)
        z, c = _zero_share(modules[name], post)
        zeros[name] = zeros.get(name, 0) + z.cpu()
        counts[name] = counts.get(name, 0) + c

    keyword = any(isinstance(x, dict) for x, _ in itertools.islice(batches(data, model), 1))
    try:  # fx replays positional inputs; keyword inputs (Hugging Face batches) run the model itself, with hooks
        gm = None if keyword else symbolic_trace(model)
    except Exception:  # fx cannot trace every model: fall back to hooks removed in `finally`
        gm = None
    watch: dict[fx.Node, str] = {}
    post_of: dict[fx.Node, fx.Node | None] = {}
    if gm is not None:
        gmods = dict(gm.named_modules())
        watch = {nd: nd.target for nd in gm.graph.nodes if nd.op == "call_module" and nd.target in pooled}
        post_of = {nd: _relu_after(nd, gmods) for nd in watch}
        for name in set(watch.values()):
            relu_found[name] = any(post_of[nd] is not None for nd in watch if watch[nd] == name)
    # layers inside a module fx keeps whole (e.g. nn.TransformerEncoder) are seen through temporary hooks
    hooked = [name for name in names if name not in set(watch.values())]
    handles = []
    try:
        for name in hooked:
            handles.append(modules[name].register_forward_hook(lambda m, i, o, _n=name: record(_n, o, None)))
            relu_found[name] = False
        with eval_mode(model), torch.inference_mode():
            for x, _ in batches(data, model):
                if gm is None:
                    call(model, x)
                else:
                    interp = fx.Interpreter(gm, garbage_collect_values=False)
                    interp.run(*(x if isinstance(x, (list, tuple)) else (x,)))
                    for nd, name in watch.items():
                        post = post_of[nd]
                        record(name, interp.env[nd], interp.env[post] if post is not None else None)
                n += size(x)
    finally:
        for h in handles:
            h.remove()
    return UnitStats(
        pooled={k: torch.cat(v) for k, v in pooled.items() if v},
        apoz={k: zeros[k] / counts[k] for k in zeros},
        relu_found=relu_found,
        n=n,
    )


def histogram_entropy(values: Tensor, bins: int = 32) -> tuple[Tensor, Tensor]:
    """Entropy in bits of each column of `values` [N, units] over `bins` equal bins spanning the column's
    range; returns (entropy [units], dead [units] = the column is constant).

    >>> h, dead = histogram_entropy(torch.tensor([[0.0, 1.0], [1.0, 1.0]]), bins=2)
    >>> h.tolist(), dead.tolist()
    ([1.0, 0.0], [False, True])
    """
    v = values.double()
    lo, hi = v.min(0).values, v.max(0).values
    span = hi - lo
    dead = span <= 1e-12 * torch.maximum(hi.abs(), lo.abs()).clamp(min=1.0)
    idx = ((v - lo) / torch.where(dead, torch.ones_like(span), span) * bins).long().clamp(0, bins - 1)
    counts = torch.zeros(v.shape[1], bins, dtype=torch.float64)
    counts.scatter_add_(1, idx.T, torch.ones_like(idx.T, dtype=torch.float64))
    p = counts / counts.sum(1, keepdim=True)
    h = -(p * torch.where(p > 0, p.log2(), torch.zeros_like(p))).sum(1)
    return torch.where(dead, torch.zeros_like(h), h), dead
