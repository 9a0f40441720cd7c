"""Layer-wise pruning methods for language models: a registry, sparsity patterns, and magnitude and Wanda.

A method prunes one linear layer given its weight as ``(out, in)`` (a float32 working copy, float64 for a float64
model), the input statistics it asked for (`needs`: ``"norms"`` or ``"hessian"``, see
`workbench.llm.calibrate.LayerStats`), the layer's target sparsity and the pattern, and returns the mask (True =
pruned). A method that also changes the kept weights (``updates=True``: SparseGPT) writes them into the working copy;
the caller writes it back. Elements already pruned by earlier steps (`current`) stay pruned and count towards the
sparsity: they are the first to go.

Patterns (`parse_pattern`): ``"unstructured"`` (within the scope the method compares: Wanda and SparseGPT within each
output row, magnitude within the layer, as the papers' code does), or ``"N:M"`` such as ``"2:4"`` / ``"4:8"``: in
every group of M consecutive input weights of a row exactly N are kept (at most N where earlier steps already pruned
more).

>>> import torch
>>> w = torch.tensor([[1.0, -2.0, 3.0, -4.0], [4.0, 3.0, 2.0, 1.0]])
>>> stats = LayerStats(rows=2, sq=torch.tensor([16.0, 9.0, 1.0, 1.0], dtype=torch.float64))  # ||X_j|| = 4, 3, 1, 1
>>> get_method("wanda").fn(w, stats, 0.5, None, None, {}).int().tolist()  # scores 4 6 3 4 / 16 9 2 1, per row
[[1, 0, 1, 0], [0, 0, 1, 1]]
>>> get_method("magnitude").fn(w, stats, 0.5, parse_pattern("2:4"), None, {}).int().tolist()
[[1, 1, 0, 0], [0, 0, 1, 1]]
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..errors import PlanError, suggest
from ..masks.nm import nm_mask
from ..masks.topk import lowest_k
from .calibrate import LayerStats

__all__ = [
    "Method",
    "Pattern",
    "available_methods",
    "get_method",
    "parse_pattern",
    "register_method",
    "row_mask",
    "wanda_scores",
]

NEEDS = ("weights", "norms", "hessian")


@dataclass(frozen=True)
class Pattern:
    """``N:M`` sparsity: keep `n` of every `m` consecutive input weights of a row."""

    n: int
    m: int

    def __str__(self) -> str:
        return f"{self.n}:{self.m}"

    @property
    def sparsity(self) -> float:
        return 1.0 - self.n / self.m


def parse_pattern(pattern: str | Pattern | None) -> Pattern | None:
    """``"unstructured"`` / None -> None; ``"2:4"`` -> ``Pattern(2, 4)``; a PlanError for anything else."""
    if pattern is None or isinstance(pattern, Pattern):
        return pattern
    if pattern == "unstructured":
        return None
    m = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", pattern) if isinstance(pattern, str) else None
    if m is None or not 0 < int(m.group(1)) < int(m.group(2)):
        raise PlanError(f"pattern must be 'unstructured' or 'N:M' with 0 < N < M (e.g. '2:4', '4:8'), got {pattern!r}")
    return Pattern(int(m.group(1)), int(m.group(2)))


MethodFn = Callable[[Tensor, LayerStats, float, "Pattern | None", "Tensor | None", dict], Tensor]


@dataclass(frozen=True)
class Method:
    """A registered layer-wise method: ``fn(weight, stats, sparsity, pattern, current, options) -> mask``.

    `needs` says which statistics it reads (``"weights"``: none); `updates` whether it changes kept weights (then its
    step records them so undo restores them bitwise)."""

    name: str
    fn: MethodFn
    needs: str
    updates: bool
    summary: str
    reference: str = ""


_METHODS: dict[str, Method] = {}


def register_method(
    name: str, *, needs: str = "weights", updates: bool = False, reference: str = "", overwrite: bool = False
) -> Callable[[MethodFn], MethodFn]:
    """Register a layer-wise method under `name` (the docstring's first line is its summary).

    >>> @register_method("zero-first-demo", overwrite=True)
    ... def _first(weight, stats, sparsity, pattern, current, options):
    ...     '''Prune column 0.'''
    ...     mask = torch.zeros(weight.shape, dtype=torch.bool); mask[:, 0] = True
    ...     return mask
    >>> "zero-first-demo" in available_methods()
    True
    """
    if needs not in NEEDS:
        raise ValueError(f"needs must be one of {NEEDS}, got {needs!r}")

    def deco(fn: MethodFn) -> MethodFn:
        if name in _METHODS and not overwrite:
            raise ValueError(f"method {name!r} is already registered; pass overwrite=True to replace it")
        summary = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
        _METHODS[name] = Method(name, fn, needs, updates, summary, reference)
        return fn

    return deco


def get_method(name: str) -> Method:
    """The method registered as `name`; a PlanError names the available ones."""
    if isinstance(name, str) and name in _METHODS:
        return _METHODS[name]
    raise PlanError(
        f"unknown layer-wise method {name!r};{suggest(str(name), available_methods(), 'method')} "
        f"Available: {', '.join(available_methods())}. Register your own with workbench.llm.register_method."
    )


def available_methods() -> list[str]:
    """Names of all registered layer-wise methods, sorted."""
    return sorted(_METHODS)


# selection helpers ------------------------------------------------------------------------------------------------
def row_mask(scores: Tensor, sparsity: float, current: Tensor | None = None) -> Tensor:
    """True for the ``int(in * sparsity)`` lowest scores of every row (ties by position), plus `current`."""
    k = int(scores.shape[1] * sparsity)
    s = scores if current is None else scores.masked_fill(current, -math.inf)
    mask = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
    if k:
        mask.scatter_(1, torch.argsort(s, dim=1, stable=True)[:, :k], True)
    return mask if current is None else mask | current


def check_nm(weight: Tensor, pattern: Pattern) -> None:
    if weight.shape[1] % pattern.m:
        raise PlanError(
            f"pattern {pattern} needs the input width to be a multiple of {pattern.m}, got {weight.shape[1]}; "
            "use 'unstructured' or another M"
        )


def select(scores: Tensor, sparsity: float, pattern: Pattern | None, current: Tensor | None) -> Tensor:
    """Per-row selection (unstructured) or per N:M group."""
    if pattern is not None:
        check_nm(scores, pattern)
        return nm_mask(scores, pattern.n, pattern.m, current)
    return row_mask(scores, sparsity, current)


def wanda_scores(weight: Tensor, sq: Tensor) -> Tensor:
    """Wanda's score ``|W_ij| * ||X_j||_2`` for an ``(out, in)`` weight and the inputs' per-feature sum of squares."""
    return weight.abs() * sq.to(weight.device, weight.dtype).sqrt()[None, :]


# the methods ------------------------------------------------------------------------------------------------------
@register_method("magnitude", reference="Han et al. 2015; the layer-wise baseline of Sun et al. 2023")
def magnitude(weight: Tensor, stats: LayerStats, sparsity: float, pattern, current, options: dict[str, Any]) -> Tensor:
    """|W_ij|, compared within the whole layer (unstructured) or within each N:M group."""
    scores = weight.abs()
    if pattern is not None:
        return select(scores, sparsity, pattern, current)
    if current is not None:
        scores = scores.masked_fill(current, -math.inf)
    (mask,) = lowest_k([lambda: scores], int(scores.numel() * sparsity))
    return mask if current is None else mask | current


@register_method(
    "wanda",
    needs="norms",
    reference="Sun et al. 2023, A simple and effective pruning approach for large language models",
)
def wanda(weight: Tensor, stats: LayerStats, sparsity: float, pattern, current, options: dict[str, Any]) -> Tensor:
    """|W_ij| * ||X_j||_2, compared within each output row (unstructured) or within each N:M group; no update."""
    return select(wanda_scores(weight, stats.sq), sparsity, pattern, current)
