"""Wanda (Sun et al. 2023): |W_ij| times the L2 norm of input feature j over the calibration data.

The input norms are collected once per selection for every layer, in one pass over `calib` in eval mode under
`torch.no_grad` (temporary forward hooks, removed in a ``finally``; the attention fast path is switched off for
the pass so the layers inside `nn.TransformerEncoderLayer` are seen). What "input feature" means per layer kind:

- Linear: the last dimension of its input (over all samples and positions);
- Conv2d/Conv1d: the unfolded input patch, one feature per (input channel, kernel position), exactly what
  multiplies each weight (grouped and depthwise convs per group); Conv3d and transposed convs: per input channel;
- MultiheadAttention: query/key/value features for the three blocks of ``in_proj_weight``; its ``out_proj`` gets
  the attention context (recomputed with an identity output projection, since it is never called as a module);
- LSTM/GRU/RNN: ``weight_ih_l{k}`` the layer's input sequence, ``weight_hh_l{k}`` the previous hidden states
  (each layer is re-run alone to see them; the initial state counts when given; packed sequences are refused);
- BatchNorm/LayerNorm/GroupNorm: the normalised input that gamma multiplies; Embedding: sqrt(token counts).

**Per-row comparison.** Wanda compares weights within each output row (it prunes the same share of every row).
The registry ranks one layer (or, globally, all layers) at a time, so `wanda` compares across rows; `wanda-row`
replaces each score by its rank within its output row (0, 1/n, ..., (n-1)/n), so any weight-granularity plan
removes the same share of every row (exactly when ``ratio * n`` is a whole number, else rows differ by one weight;
a global plan then gives every layer the same ratio, as Wanda does). Use it with ``granularity="weight"``.

>>> import torch, workbench as wb
>>> lin = torch.nn.Linear(4, 2, bias=False)
>>> with torch.no_grad():
...     _ = lin.weight.copy_(torch.tensor([[1.0, 1.0, 2.0, 3.0], [2.0, 4.0, 5.0, 6.0]]))
>>> x = torch.tensor([[3.0, 1.0, 1.0, 1.0], [4.0, 0.0, 0.0, 0.0]])  # input feature norms: 5, 1, 1, 1
>>> bench = wb.Workbench(lin, [(x, torch.tensor([0, 1]))])
>>> _ = bench.apply(wb.Plan.uniform(0.5, criterion="wanda"), evaluate=False)  # scores [5 1 2 3], [10 4 5 6]
>>> (lin.weight != 0).int().tolist()  # across the layer: the four smallest go, three of them in row 0
[[1, 0, 0, 0], [1, 0, 1, 1]]
>>> _ = bench.undo(); _ = bench.apply(wb.Plan.uniform(0.5, criterion="wanda-row"), evaluate=False)
>>> (lin.weight != 0).int().tolist()  # within each row: every row keeps its two best
[[1, 0, 0, 1], [1, 0, 0, 1]]
"""

from __future__ import annotations

import copy
import re
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import CriterionError
from ..evaluate import batches, call, eval_mode
from ._grad import need_data
from ._registry import ScoreContext, register_criterion

__all__ = ["input_norms"]

_RNN_PARAM = re.compile(r"^weight_(ih|hh|hr)_l(\d+)(_reverse)?$")


def _key(module: str, param: str) -> str:
    return f"{module}.{param}" if module else param


def _add(stats: dict[str, Tensor], key: str, sq: Tensor) -> None:
    sq = sq.detach().double().cpu()
    stats[key] = sq if key not in stats else stats[key] + sq


def _sq_last(x: Tensor) -> Tensor:
    x = x.detach().double()
    return x.square().reshape(-1, x.shape[-1]).sum(0)


def _conv(m: nn.modules.conv._ConvNd, x: Tensor) -> Tensor:
    """Sum of squares of every input a weight multiplies, shaped like the weight."""
    x = x.detach().double()
    w = m.weight
    if isinstance(m, nn.modules.conv._ConvTransposeNd) or not isinstance(m, (nn.Conv1d, nn.Conv2d)):
        batched = x.dim() == len(w.shape)  # (N, C, *spatial)
        ch = 1 if batched else 0
        sq = x.square().movedim(ch, 0).reshape(x.shape[ch], -1).sum(1)  # per input channel
        if isinstance(m, nn.modules.conv._ConvTransposeNd):  # weight: (C_in, C_out/g, *k)
            return sq.reshape(-1, *([1] * (w.dim() - 1))).expand(w.shape)
        g = m.groups
        per = sq.reshape(g, -1)  # (groups, C_in/g)
        rows = per.repeat_interleave(w.shape[0] // g, 0)  # (C_out, C_in/g)
        return rows.reshape(*rows.shape, *([1] * (w.dim() - 2))).expand(w.shape)
    one_d = isinstance(m, nn.Conv1d)
    if x.dim() == (2 if one_d else 3):  # unbatched
        x = x.unsqueeze(0)
    k, s, d, p = m.kernel_size, m.stride, m.dilation, m.padding
    if one_d:
        x, k, s, d = x.unsqueeze(2), (1, *k), (1, *s), (1, *d)
        p = p if isinstance(p, str) else (0, *p)
    if isinstance(p, str) or m.padding_mode != "zeros":
        if p == "valid":
            pads = [0, 0, 0, 0]
        elif p == "same":
            pads = []
            for kk, dd in zip(reversed(k), reversed(d)):
                total = dd * (kk - 1)
                pads += [total // 2, total - total // 2]
        else:
            pads = [v for pp in reversed(p) for v in (pp, pp)]
        mode = "constant" if m.padding_mode == "zeros" else m.padding_mode
        x = F.pad(x, pads, mode=mode) if any(pads) else x
        p = (0, 0)
    cols = F.unfold(x, k, dilation=d, padding=p, stride=s)  # (N, C*kh*kw, L)
    sq = cols.square().sum((0, 2))  # (C*kh*kw,)
    g = m.groups
    per = sq.reshape(g, -1)  # (groups, C/g*kh*kw)
    return per.repeat_interleave(w.shape[0] // g, 0).reshape(w.shape)


def _norm(m: nn.Module, x: Tensor) -> Tensor:
    x = x.detach().double()
    if isinstance(m, nn.LayerNorm):
        xh = F.layer_norm(x, m.normalized_shape, eps=m.eps)
        return xh.square().reshape(-1, *m.normalized_shape).sum(0)
    if isinstance(m, nn.GroupNorm):
        xh = F.group_norm(x, m.num_groups, eps=m.eps)
    elif isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None and not m.training:
        xh = F.batch_norm(x, m.running_mean.double(), m.running_var.double(), training=False, eps=m.eps)
    else:  # batch statistics (BatchNorm without running stats, InstanceNorm)
        dims = [i for i in range(x.dim()) if i != 1]
        xh = (x - x.mean(dims, keepdim=True)) / (x.var(dims, unbiased=False, keepdim=True) + m.eps).sqrt()
    return xh.square().movedim(1, 0).reshape(xh.shape[1], -1).sum(1)


def _mha_inputs(args: tuple, kwargs: dict) -> tuple[Tensor, Tensor, Tensor]:
    names = ("query", "key", "value")
    vals = list(args[:3]) + [kwargs.get(n) for n in names[len(args[:3]) :]]
    return vals[0], vals[1], vals[2]


def _mha(m: nn.MultiheadAttention, name: str, args: tuple, kwargs: dict, ident: nn.Module, stats) -> None:
    q, k, v = _mha_inputs(args, kwargs)
    sq_q, sq_k, sq_v = _sq_last(q), _sq_last(k), _sq_last(v)
    e = m.embed_dim
    if m.in_proj_weight is not None:
        sq = torch.cat([sq_q.expand(e, -1), sq_k.expand(e, -1), sq_v.expand(e, -1)])
        _add(stats, _key(name, "in_proj_weight"), sq)
    else:
        _add(stats, _key(name, "q_proj_weight"), sq_q[None, :])
        _add(stats, _key(name, "k_proj_weight"), sq_k[None, :])
        _add(stats, _key(name, "v_proj_weight"), sq_v[None, :])
    kw = dict(kwargs)
    kw["need_weights"] = False
    context = ident(*args, **kw)[0]  # the attention output before the output projection
    _add(stats, _key(name, "out_proj.weight"), _sq_last(context)[None, :])


def _identity_out(m: nn.MultiheadAttention) -> nn.Module:
    """A structural clone of `m` sharing its tensors, with an identity output projection."""
    memo: dict[int, Any] = {id(t): t for t in m.parameters()}
    memo.update({id(t): t for t in m.buffers()})
    clone = copy.deepcopy(m, memo)
    clone._forward_hooks.clear()
    clone._forward_pre_hooks.clear()
    w = m.out_proj.weight
    clone.out_proj.weight = nn.Parameter(torch.eye(w.shape[0], w.shape[1], dtype=w.dtype, device=w.device), False)
    if clone.out_proj.bias is not None:
        clone.out_proj.bias = nn.Parameter(torch.zeros_like(m.out_proj.bias), False)
    return clone.eval()


def _rnn(m: nn.RNNBase, name: str, args: tuple, kwargs: dict, stats) -> None:
    x = args[0] if args else kwargs.get("input")
    hx = args[1] if len(args) > 1 else kwargs.get("hx")
    if isinstance(x, nn.utils.rnn.PackedSequence):
        raise CriterionError(
            f"criterion 'wanda' cannot see the inputs of {name!r}: it is called with a PackedSequence; calibrate "
            "with padded tensors or use a weight criterion (magnitude) for it"
        )
    x = x.detach()
    if x.dim() == 2:  # unbatched (T, F)
        x = x.unsqueeze(1)
        hx = None if hx is None else (tuple(h.unsqueeze(1) for h in hx) if isinstance(hx, tuple) else hx.unsqueeze(1))
    elif m.batch_first:
        x = x.transpose(0, 1)  # (T, B, F)
    dirs = 2 if m.bidirectional else 1
    mode = type(m)
    inp = x
    for layer in range(m.num_layers):
        sq_in = _sq_last(inp)
        kw: dict[str, Any] = {"bias": m.bias, "bidirectional": m.bidirectional}
        if isinstance(m, nn.LSTM):
            kw["proj_size"] = m.proj_size
        if isinstance(m, nn.RNN):
            kw["nonlinearity"] = m.nonlinearity
        single = mode(inp.shape[-1], m.hidden_size, num_layers=1, **kw).to(x.device, x.dtype)
        params = {}
        for d in range(dirs):
            sfx = "_reverse" if d else ""
            _add(stats, _key(name, f"weight_ih_l{layer}{sfx}"), sq_in[None, :])
            for pname, _ in single.named_parameters():
                if pname.endswith(f"_l0{sfx}"):
                    params[pname] = getattr(m, pname.replace(f"_l0{sfx}", f"_l{layer}{sfx}"))
        h0 = None
        if hx is not None:
            sl = slice(layer * dirs, (layer + 1) * dirs)
            h0 = tuple(h[sl] for h in hx) if isinstance(hx, tuple) else hx[sl]
        out = torch.func.functional_call(single, params, (inp,) if h0 is None else (inp, h0))[0]
        width = out.shape[-1] // dirs
        for d in range(dirs):
            sfx = "_reverse" if d else ""
            h = out[..., d * width : (d + 1) * width]
            prev = h[:-1] if d == 0 else h[1:]  # h_{t-1} for the forward direction, h_{t+1} for the reverse
            sq = _sq_last(prev) if prev.shape[0] else torch.zeros(width, dtype=torch.float64)
            if h0 is not None:
                first = h0[0] if isinstance(h0, tuple) else h0
                sq = sq + _sq_last(first[d])
            _add(stats, _key(name, f"weight_hh_l{layer}{sfx}"), sq[None, :])
        inp = out


def input_norms(model: nn.Module, data, adapter=None) -> dict[str, Tensor]:
    """Sum of squares of the inputs each prunable weight multiplies, over `data`, by full parameter name (float64,
    broadcastable to the weight). The model is run in eval mode (its batches split by `adapter` when given);
    hooks are removed before returning."""
    from ..rules import is_conv1d

    stats: dict[str, Tensor] = {}
    modules = dict(model.named_modules())
    idents = {n: _identity_out(m) for n, m in modules.items() if isinstance(m, nn.MultiheadAttention)}

    def hook(name: str, m: nn.Module, args: tuple, kwargs: dict, out: Any) -> None:
        x = args[0] if args else next(iter(kwargs.values()), None)
        if isinstance(m, nn.Linear):
            _add(stats, _key(name, "weight"), _sq_last(x)[None, :])
        elif is_conv1d(m):  # Hugging Face's Conv1D holds its weight in x out: input feature j is row j
            _add(stats, _key(name, "weight"), _sq_last(x)[:, None])
        elif isinstance(m, nn.modules.conv._ConvNd):
            _add(stats, _key(name, "weight"), _conv(m, x))
        elif isinstance(m, (nn.Embedding, nn.EmbeddingBag)):
            counts = torch.bincount(x.detach().reshape(-1).cpu(), minlength=m.num_embeddings).double()
            _add(stats, _key(name, "weight"), counts[:, None])
        elif isinstance(m, (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)):
            if getattr(m, "weight", None) is not None:
                _add(stats, _key(name, "weight"), _norm(m, x))
        elif isinstance(m, nn.MultiheadAttention):
            _mha(m, name, args, kwargs, idents[name], stats)
        elif isinstance(m, nn.RNNBase):
            _rnn(m, name, args, kwargs, stats)

    kinds = (
        nn.Linear,
        nn.modules.conv._ConvNd,
        nn.Embedding,
        nn.EmbeddingBag,
        nn.modules.batchnorm._NormBase,
        nn.LayerNorm,
        nn.GroupNorm,
        nn.MultiheadAttention,
        nn.RNNBase,
    )
    handles = []
    mha = getattr(torch.backends, "mha", None)
    fast = mha.get_fastpath_enabled() if mha is not None else None
    try:
        for name, m in modules.items():
            if isinstance(m, kinds) or is_conv1d(m):
                handles.append(
                    m.register_forward_hook(lambda m, a, k, o, _n=name: hook(_n, m, a, k, o), with_kwargs=True)
                )
        if mha is not None:
            mha.set_fastpath_enabled(False)
        with eval_mode(model), torch.no_grad():
            for x, _ in batches(data, model, adapter=adapter):
                call(model, x)
    finally:
        for h in handles:
            h.remove()
        if mha is not None:
            mha.set_fastpath_enabled(fast)
    return stats


def _wanda(weight: Tensor, ctx: ScoreContext, name: str) -> Tensor:
    need_data(ctx, name)
    key = f"wanda:{id(ctx.data)}"
    stats = ctx.cache.get(key)
    if stats is None:
        stats = ctx.cache[key] = input_norms(ctx.model, ctx.data, ctx.cache.get("adapter"))
    sq = stats.get(ctx.param)
    if sq is None:
        local = ctx.param.rsplit(".", 1)[-1]
        if _RNN_PARAM.match(local) and local.startswith("weight_hr"):
            why = "the inputs of an LSTM's projection (weight_hr_*) are internal to the LSTM"
        else:
            why = "its layer was never called as a module on the calibration data, so its inputs were not seen"
        raise CriterionError(
            f"criterion {name!r} cannot score {ctx.param!r}: {why}; exclude it from the plan or use 'magnitude'"
        )
    return (weight.detach().double().abs() * sq.to(weight.device).sqrt()).expand(weight.shape)


@register_criterion(
    "wanda", reference="Sun et al. 2023, A simple and effective pruning approach for large language models"
)
def wanda(weight: Tensor, ctx: ScoreContext) -> Tensor:
    """|W_ij| * ||X_j||_2 (input feature norm over `calib`), compared across the whole layer (or model).

    >>> import torch
    >>> from workbench.criteria import ScoreContext
    >>> lin = torch.nn.Linear(2, 1, bias=False)
    >>> with torch.no_grad():
    ...     _ = lin.weight.fill_(1.0)
    >>> data = [(torch.tensor([[3.0, 1.0], [4.0, 0.0]]), torch.tensor([0, 0]))]
    >>> wanda(lin.weight, ScoreContext("weight", "", lin, lin, data=data)).tolist()
    [[5.0, 1.0]]
    """
    return _wanda(weight, ctx, "wanda").float()


@register_criterion("wanda-row", reference="Sun et al. 2023 (Wanda), compared within each output row")
def wanda_row(weight: Tensor, ctx: ScoreContext) -> Tensor:
    """Wanda's score as a rank within its output row, in [0, 1): every row loses the same share of weights."""
    s = _wanda(weight, ctx, "wanda-row")
    if s.dim() < 2:
        return s.float()
    rows = s.reshape(s.shape[0], -1)
    rank = torch.empty_like(rows)
    order = torch.argsort(rows, dim=1, stable=True)
    n = rows.shape[1]
    rank.scatter_(1, order, torch.arange(n, dtype=rows.dtype, device=rows.device).expand_as(rows).contiguous())
    return (rank / n).reshape(s.shape).float()
