"""SynFlow (Tanaka et al. 2020): data-free synaptic flow, for pruning at initialisation.

Every floating parameter and buffer is replaced by its absolute value in float64 (against overflow), the model
runs in eval mode (BatchNorm uses its running statistics) on one all-ones input shaped like one sample of the
calibration data, ``R = sum(output)``, and a weight scores ``|w| * dR/d|w|``. This is the official
implementation's ``linearize`` (``abs_`` on the whole state dict) done on copies through
`torch.func.functional_call`: the live model is never written to.

The paper prunes *iteratively*: 100 rounds, recomputing the scores on the masked network while the density shrinks
exponentially. The registered `synflow` criterion ranks weights by the round in which that process (run towards
99% sparsity) removes them, so any plan prunes as iterative SynFlow does; `workbench.training.synflow_prune` runs
the schedule aimed at one ratio, as in the paper.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..adapter import logits_of, split
from ..errors import CriterionError
from ..evaluate import eval_mode
from ._grad import forward, one_thread_if_small
from ._registry import ScoreContext, register_criterion

__all__ = ["iterative_order", "ones_like_input", "synflow_scores"]


def ones_like_input(data: Any) -> Any:
    """All-ones input of one sample, shaped like the first batch of `data` (float64 for floating inputs)."""
    for batch in data:
        x, _ = split(batch)
        return _ones(x)
    raise CriterionError("synflow needs the shape of one input: the calibration data yielded no batches")


def _ones(x: Any) -> Any:
    if isinstance(x, Tensor):
        return torch.ones((1, *x.shape[1:]), dtype=torch.float64 if x.is_floating_point() else x.dtype, device=x.device)
    if isinstance(x, (list, tuple)):
        return type(x)(_ones(v) for v in x)
    if isinstance(x, dict):
        return {k: _ones(v) for k, v in x.items()}
    return x


def synflow_scores(model: nn.Module, example: Any, masks: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
    """One SynFlow round: ``|w| * dR/d|w|`` (float64) for every floating parameter of `model`, by name.

    `example` is the all-ones input (`ones_like_input`); `masks` (True = pruned) zero those weights first, as in
    the iterative procedure. The model is not changed.

    >>> lin = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 1, bias=False))
    >>> with torch.no_grad():
    ...     _ = lin[0].weight.copy_(torch.tensor([[1.0, -2.0], [3.0, 4.0]])); _ = lin[1].weight.copy_(torch.tensor([[-1.0, 2.0]]))
    >>> s = synflow_scores(lin, torch.ones(1, 2, dtype=torch.float64))
    >>> s["0.weight"].tolist(), s["1.weight"].tolist()  # |W1_ij| * colsum|W2|_i ; |W2_i| * rowsum|W1|_i
    ([[1.0, 2.0], [6.0, 8.0]], [[3.0, 14.0]])
    """
    masks = masks or {}
    state: dict[str, Tensor] = {}
    for name, b in model.named_buffers():
        state[name] = b.detach().double().abs() if b.is_floating_point() else b
    lv: dict[str, Tensor] = {}
    for name, p in model.named_parameters():
        if not p.is_floating_point():
            continue
        v = p.detach().double().abs()
        if name in masks:
            v = v.masked_fill(masks[name].to(v.device), 0)
        lv[name] = v.requires_grad_(True)
    with eval_mode(model), torch.inference_mode(False), torch.enable_grad():
        out = logits_of(forward(model, {**state, **lv}, example))
        r = out.sum()
        if not r.requires_grad:
            return {k: torch.zeros_like(v) for k, v in lv.items()}
        gs = torch.autograd.grad(r, list(lv.values()), allow_unused=True)
    return {k: torch.zeros_like(v) if g is None else (g * v).detach().abs() for (k, v), g in zip(lv.items(), gs)}


ROUNDS = 100  # rounds of the iterative order the `synflow` criterion computes
MAX_SPARSITY = 0.99  # the sparsity that order runs to (removing ~4.5% of what is left per round)
_KINDS = ("linear", "conv", "lstm", "attention")  # the weights the iterative process removes


def iterative_order(
    model: nn.Module, example: Any, rounds: int = ROUNDS, max_sparsity: float = MAX_SPARSITY
) -> dict[str, Tensor]:
    """Scores (float64, by parameter name) that rank weights in the order iterative SynFlow removes them.

    The linear/conv/LSTM/attention weights (the targets a default plan covers) are pruned in `rounds` rounds
    towards `max_sparsity` with the paper's exponential schedule, re-scoring the masked network each round. A weight
    removed in round k scores ``k - 1 + f`` with ``f in [0, 1)`` its SynFlow score in that round relative to the
    round's largest removed one; survivors (and every other parameter) score ``rounds + f`` from the last round.
    The lowest-r share of these scores is what iterative SynFlow has pruned when it passes sparsity r.
    """
    with one_thread_if_small(model):
        return _iterative_order(model, example, rounds, max_sparsity)


def _iterative_order(model: nn.Module, example: Any, rounds: int, max_sparsity: float) -> dict[str, Tensor]:
    from ..masks.select import n_to_prune
    from ..masks.topk import lowest_k
    from ..targets import find_targets

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tied weights: said once when the Workbench was created
        targets = find_targets(model)
    names = [p for t in targets if t.kind in _KINDS and not t.tied_to for p in t.param_names()]
    total = sum(model.get_parameter(n).numel() for n in names)
    masks: dict[str, Tensor] = {}
    order = {n: torch.full(model.get_parameter(n).shape, -1.0, dtype=torch.float64) for n in names}
    for k in range(1, rounds + 1):
        scores = synflow_scores(model, example, masks)
        density = (1.0 - max_sparsity) ** (k / rounds)
        cur = [scores[n].masked_fill(masks[n], -math.inf) if n in masks else scores[n] for n in names]
        fns = [lambda s=s: s for s in cur]
        chosen = lowest_k(fns, n_to_prune(1.0 - density, total))
        fresh = {n: c.cpu() & (order[n] < 0) for n, c in zip(names, chosen)}
        top = max((float(scores[n].cpu()[m].max()) for n, m in fresh.items() if m.any()), default=0.0)
        for n, m in fresh.items():
            if m.any():
                order[n][m] = (k - 1) + scores[n].cpu()[m] / (top * (1 + 1e-9) + 1e-300)
        masks = {n: c for n, c in zip(names, chosen) if bool(c.any())}
    scores = synflow_scores(model, example, masks)  # survivors, ranked in the final masked network
    top = max((float(v.max()) for v in scores.values() if v.numel()), default=0.0) or 1.0
    out = {}
    for n, v in scores.items():
        last = rounds + v.cpu() / (top * (1 + 1e-9))
        out[n] = torch.where(order[n] >= 0, order[n], last) if n in order else last
    return out


@register_criterion(
    "synflow",
    reference="Tanaka et al. 2020, Pruning neural networks without any data by iteratively conserving synaptic flow",
)
def synflow(weight: Tensor, ctx: ScoreContext) -> Tensor:
    """Data-free, iterative SynFlow: weights ranked by the round in which 100 rounds of SynFlow remove them.

    One round of scores (`synflow_scores`) at high sparsity can cut a layer off entirely (layer collapse, the
    failure the paper's iteration avoids: measured on the untrained digits-cnn at 90%, one round pruned
    features.7 to 100%), so the registered criterion is the iterative order (`iterative_order`, computed once per
    selection); for the paper's exact schedule aimed at one ratio use `workbench.training.synflow_prune`.
    """
    if ctx.model is None or ctx.data is None:
        raise CriterionError(
            f"criterion 'synflow' needs the shape of one input to score {ctx.target!r}: create the Workbench with "
            "data (only its shape is used) or use workbench.training.synflow_prune(bench, ratio)"
        )
    key = f"synflow:{id(ctx.data)}"
    scores = ctx.cache.get(key)
    if scores is None:
        by_name = iterative_order(ctx.model, ones_like_input(ctx.data))
        scores = ctx.cache[key] = {id(ctx.model.get_parameter(k)): v for k, v in by_name.items()}
    try:
        s = scores[id(ctx.model.get_parameter(ctx.param))]
    except KeyError:
        raise CriterionError(
            f"criterion 'synflow' cannot score {ctx.param!r}: not a floating-point parameter"
        ) from None
    return s.float().to(weight.device)
