"""The criteria registry: one place where importance scores are registered and looked up."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import CriterionError

__all__ = ["Criterion", "ScoreContext", "available", "get_criterion", "register_criterion"]


@dataclass(frozen=True)
class ScoreContext:
    """What a criterion may look at besides the weight itself.

    `param` is the full parameter name (``"features.0.weight"``); `target` the layer's name; `model` the
    live model and `data` calibration batches, for criteria that need activations or gradients; `seed`
    makes random criteria reproducible; `cache` is shared by all contexts of one selection, so a criterion
    computes its statistics once per plan (never store tensors of the model there across plans). `out`, when
    given, is a float32 buffer of the weight's shape that the criterion may write its scores into and return
    (the caller reads them before the next call): large models then score without fresh memory per tensor.
    """

    param: str
    target: str
    module: nn.Module | None = None
    model: nn.Module | None = None
    seed: int = 0
    data: Any = None
    cache: dict[str, Any] = field(default_factory=dict)
    out: Tensor | None = None

    @property
    def adapter(self):
        """How to feed `model` its `data` (`workbench.adapter.Adapter`): the bench's, shared through `cache`."""
        from ..adapter import Adapter

        ad = self.cache.get("adapter")
        if ad is None or ad.model is not self.model:
            ad = self.cache["adapter"] = Adapter(self.model)
        return ad

    def generator(self, device: torch.device | str = "cpu") -> torch.Generator:
        """A generator seeded from `seed` and the parameter name: independent of scoring order."""
        import zlib

        return torch.Generator(device=device).manual_seed(self.seed * 1_000_003 + zlib.crc32(self.param.encode()))


ScoreFn = Callable[[Tensor, ScoreContext], Tensor]


@dataclass(frozen=True)
class Criterion:
    """A registered importance score: lower score = pruned first.

    `fn(weight, ctx)` returns one score per element of `weight` (same shape, float). Structured
    granularities rank a unit (a filter, a neuron, a coupled channel) by the mean element score over the
    output slices of every layer producing it: the L1 norm per weight for `l1`, so a channel that several
    layers add or concatenate is compared fairly with one that a single layer makes.
    """

    name: str
    fn: ScoreFn
    summary: str
    reference: str = ""

    def score(self, weight: Tensor, ctx: ScoreContext) -> Tensor:
        s = self.fn(weight.detach(), ctx)
        if s.shape != weight.shape:
            raise CriterionError(
                f"criterion {self.name!r} returned scores of shape {tuple(s.shape)} for {ctx.param!r} "
                f"of shape {tuple(weight.shape)}; a criterion must score every element"
            )
        return s


_REGISTRY: dict[str, Criterion] = {}


def register_criterion(name: str, *, reference: str = "", overwrite: bool = False) -> Callable[[ScoreFn], ScoreFn]:
    """Register `fn(weight, ctx) -> scores` under `name`; the docstring's first line is its summary.

    >>> @register_criterion("abs-demo", overwrite=True)
    ... def _abs(w, ctx):
    ...     '''|w|.'''
    ...     return w.abs()
    >>> "abs-demo" in available()
    True
    """

    def deco(fn: ScoreFn) -> ScoreFn:
        if name in _REGISTRY and not overwrite:
            raise ValueError(f"criterion {name!r} is already registered; pass overwrite=True to replace it")
        summary = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
        _REGISTRY[name] = Criterion(name, fn, summary, reference)
        return fn

    return deco


def get_criterion(name: str) -> Criterion:
    """The criterion registered as `name`; a CriterionError lists the available ones."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise CriterionError(
            f"unknown criterion {name!r}; available: {', '.join(available())}. "
            "Register your own with workbench.criteria.register_criterion."
        ) from None


def available() -> list[str]:
    """Names of all registered criteria, sorted."""
    return sorted(_REGISTRY)
