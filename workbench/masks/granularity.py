"""The granularity registry: the units pruning removes (a weight, a neuron, a filter, an N:M group, a block, ...).

Fixed names (``weight``, ``neuron``, ``filter``) are registered; patterned names are parsed on demand:

- ``"N:M"`` (``"2:4"``, ``"1:4"``, any ``0 < N < M``): in every group of M consecutive weights along the input
  dimension keep the N highest-scoring ones (`workbench.masks.nm`). The pattern fixes the sparsity at
  ``1 - N/M``, so a plan's ratio must be exactly that (``Plan.uniform(0.5, granularity="2:4")``).
- ``"blockRxC"`` (``"block4x4"``, ``"block16x16"``, ...): R x C tiles of the weight seen as 2-D
  (out x in*kh*kw), ranked by the sum of their element scores (`workbench.masks.block`); the ratio is the
  share of blocks pruned.

>>> get_granularity("2:4").fixed_ratio
0.5
>>> get_granularity("block4x8").shape
(4, 8)
>>> get_granularity("filter").structured
True
>>> structured_granularities()  # each layer's own whole units, in the order a layer offering several prefers
('filter', 'neuron', 'head', 'lstm-unit')
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

from ..errors import GranularityError, suggest
from ..targets import parse_pattern
from .block import block_scores, expand_blocks
from .nm import nm_mask

__all__ = [
    "PATTERN_FAMILIES",
    "Granularity",
    "MaskFn",
    "available_granularities",
    "get_granularity",
    "n_to_prune",
    "register_granularity",
    "structured_granularities",
    "unregister_granularity",
]

PATTERN_FAMILIES = ("N:M", "block")
_EXAMPLES = ("2:4", "1:4", "block4x4", "block16x16", "block32x32")


def n_to_prune(ratio: float, n: int) -> int:
    """How many of `n` units a ratio removes: round half up, never all of them.

    >>> n_to_prune(0.5, 10), n_to_prune(0.25, 10), n_to_prune(0.99, 10)
    (5, 3, 9)
    """
    return max(0, min(math.floor(ratio * n + 0.5), n - 1))


# mask_fn(scores, ratio, current, granularity) -> bool mask (True = pruned) of one tensor: `scores` the plan's
# criterion per element (lower goes first), `current` what is already pruned (or None); the result may leave it out
MaskFn = Callable[[Tensor, float, "Tensor | None", "Granularity"], Tensor]


@dataclass(frozen=True)
class Granularity:
    """A unit of pruning. `kinds`: target kinds it applies to; `structured`: it removes whole coupled
    channel groups (so a physical shrink is possible) rather than single weights. `family` is the name for
    fixed granularities and ``"N:M"`` or ``"block"`` for patterned ones, whose numbers are in `shape`
    (``(N, M)`` or ``(R, C)``).

    What it removes is carried by the entry: a structured one names the `unit` of the coupled groups it removes
    (``"channel"``, ``"head"``, ...); an unstructured one other than ``weight`` (whose weights are ranked per layer
    or pooled globally) gives `mask_fn`, which selects one tensor's mask from its element scores (N:M, blocks).

    `per_layer` (structured ones): a plan's ratio removes that share of each layer's own units (filters, neurons,
    heads, LSTM units); False for units that span layers (``hidden``: one group for the whole residual stream;
    ``layer``: whole residual branches). A per-layer entry is offered by every target of its first kind, and by
    targets of its other kinds that belong to a coupled group of its `unit`."""

    name: str
    summary: str
    kinds: tuple[str, ...]
    structured: bool
    family: str = ""
    shape: tuple[int, ...] = ()
    unit: str = ""  # the unit of the coupled groups it removes ("channel", "head", "lstm-unit"); "" for none
    default_kinds: tuple[str, ...] = ()  # kinds a plan's default covers with this granularity beyond the usual ones
    per_layer: bool = True  # structured: removes a share of each layer's own units (False: units spanning layers)
    mask_fn: MaskFn | None = None  # per-tensor selection (unstructured families other than `weight`)

    def __post_init__(self) -> None:
        if not self.family:
            object.__setattr__(self, "family", self.name)

    @property
    def patterned(self) -> bool:
        return self.family in PATTERN_FAMILIES

    @property
    def fixed_ratio(self) -> float | None:
        """The sparsity an N:M pattern fixes (``1 - N/M``); None for other granularities."""
        if self.family != "N:M":
            return None
        n, m = self.shape
        return 1.0 - n / m


_REGISTRY: dict[str, Granularity] = {}


def register_granularity(g: Granularity, *, overwrite: bool = False) -> Granularity:
    """Add `g` to the registry (plans, targets, the dashboard and `available_granularities` see it at once).

    >>> import torch
    >>> def rows(scores, ratio, current, g):  # whole rows of a weight, lowest summed score first
    ...     keep = scores.reshape(len(scores), -1).sum(1).argsort()[n_to_prune(ratio, len(scores)):]
    ...     mask = torch.ones_like(scores, dtype=torch.bool)
    ...     mask[keep] = False
    ...     return mask
    >>> _ = register_granularity(Granularity("rows-demo", "whole rows", ("linear",), False, mask_fn=rows))
    >>> get_granularity("rows-demo").mask_fn is rows
    True
    >>> unregister_granularity("rows-demo")
    """
    if not g.structured and g.family != "weight" and g.mask_fn is None and g.family not in PATTERN_FAMILIES:
        raise GranularityError(
            f"granularity {g.name!r}: an unstructured granularity needs mask_fn(scores, ratio, current, g) -> mask, "
            "which selects what it removes from one tensor's scores (or structured=True with a unit)"
        )
    if g.structured and not g.unit:
        raise GranularityError(
            f"granularity {g.name!r}: a structured granularity names the unit of the coupled groups it removes "
            "(unit='channel', 'head', 'hidden', 'lstm-unit', ...)"
        )
    if g.name in _REGISTRY and not overwrite:
        raise ValueError(f"granularity {g.name!r} is already registered; pass overwrite=True to replace it")
    _REGISTRY[g.name] = g
    return g


def unregister_granularity(name: str) -> None:
    """Remove a registered granularity (tests, notebooks trying one out); the built-in ones stay."""
    if name in _BUILTIN:
        raise GranularityError(f"granularity {name!r} is built in and cannot be unregistered")
    _REGISTRY.pop(name, None)


@lru_cache(maxsize=256)
def _patterned(name: str) -> Granularity | None:
    p = parse_pattern(name)
    if p is None:
        return None
    family, a, b = p
    if family == "N:M":
        if not 0 < a < b:
            raise GranularityError(
                f"granularity {name!r}: N:M keeps N of every M weights and needs 0 < N < M, e.g. '2:4' or '1:4'"
            )
        summary = f"keep {a} of every {b} consecutive input weights (sparsity {1 - a / b:g})"
    else:
        if a < 1 or b < 1:
            raise GranularityError(f"granularity {name!r}: block sizes must be positive, e.g. 'block4x4'")
        summary = f"{a}x{b} blocks of the 2-D weight (out x in*kernel), ranked by summed score"
    return Granularity(
        name, summary, ("linear", "conv"), False, family, (a, b), mask_fn=_nm if family == "N:M" else _blocks
    )


def _nm(scores: Tensor, ratio: float, current: Tensor | None, g: Granularity) -> Tensor:
    """The ``M - N`` lowest scores of every group of M along the input dimension (`workbench.masks.nm`)."""
    return nm_mask(scores, *g.shape, current)


def _blocks(scores: Tensor, ratio: float, current: Tensor | None, g: Granularity) -> Tensor:
    """The lowest-scoring R x C blocks (summed live scores; dead blocks first), `ratio` of them."""
    r, c = g.shape
    grid = block_scores(scores, r, c, current)
    chosen = torch.zeros(grid.numel(), dtype=torch.bool, device=grid.device)
    chosen[torch.argsort(grid.reshape(-1), stable=True)[: n_to_prune(ratio, grid.numel())]] = True
    return expand_blocks(chosen.view(grid.shape), r, c, scores.shape)


def get_granularity(name: str) -> Granularity:
    """The granularity called `name`: a registered one, or a parsed ``"N:M"`` / ``"blockRxC"``.

    >>> get_granularity("1:4").summary
    'keep 1 of every 4 consecutive input weights (sparsity 0.75)'
    """
    if isinstance(name, str) and name in _REGISTRY:
        return _REGISTRY[name]
    g = _patterned(name) if isinstance(name, str) else None
    if g is None:
        raise GranularityError(
            f"unknown granularity {name!r}.{suggest(str(name), available_granularities(), 'granularity')} "
            "Patterned ones: 'N:M' (e.g. '2:4') and 'blockRxC' (e.g. 'block4x4')."
        )
    return g


# the order structured granularities are preferred in where a layer offers several, by the kind they are made for
_KIND_ORDER = ("conv", "linear", "attention", "lstm")


def structured_granularities(*, per_layer: bool = True) -> tuple[str, ...]:
    """Registered granularities that remove whole units, so a physical shrink is possible.

    `per_layer=True`: those removing a share of each layer's own units, ordered by the kind of layer they are made
    for (convolutions, linear layers, attention, recurrent layers, then others; registration order within a
    kind): the order compare and recommend try them in. `per_layer=False`: those whose units span layers
    (``hidden``, ``layer``), in registration order. A granularity registered later appears here at once.

    >>> structured_granularities(per_layer=False)
    ('hidden', 'layer')
    """
    found = [g for g in _REGISTRY.values() if g.structured and g.per_layer == per_layer]
    if per_layer:
        order = {k: i for i, k in enumerate(_KIND_ORDER)}
        found.sort(key=lambda g: order.get(g.kinds[0] if g.kinds else "", len(order)))
    return tuple(g.name for g in found)


def available_granularities() -> list[str]:
    """Registered names plus examples of the patterned families (any ``N:M`` / ``blockRxC`` works).

    >>> available_granularities()[:3]
    ['weight', 'neuron', 'filter']
    """
    return list(_REGISTRY) + [e for e in _EXAMPLES if e not in _REGISTRY]


register_granularity(
    Granularity(
        "weight",
        "single weights (unstructured), per layer or global",
        ("linear", "conv", "lstm", "attention", "norm", "embedding"),
        False,
    )
)
register_granularity(
    Granularity(
        "neuron", "output rows of a Linear layer, with everything coupled to them", ("linear",), True, unit="channel"
    )
)
register_granularity(
    Granularity(
        "filter", "output channels of a conv layer, with everything coupled to them", ("conv",), True, unit="channel"
    )
)
register_granularity(
    Granularity(
        "head",
        "whole attention heads: their q/k/v rows and output-projection columns (nn.MultiheadAttention, and the "
        "q/k/v/o projections of transformer blocks; with grouped-query attention a key/value head goes with the "
        "query heads that read it)",
        ("attention", "linear"),
        True,
        unit="head",
    )
)
register_granularity(
    Granularity(
        "hidden",
        "channels of a transformer's hidden size (the residual stream): their column in every embedding, row in "
        "every attention and MLP output projection, channel in every norm on the stream and column in every layer "
        "reading it; one group for the whole model, so every layer writing the stream gets the same ratio",
        ("linear", "embedding", "conv"),
        True,
        unit="hidden",
        default_kinds=("embedding",),  # the embeddings write the stream: the group needs them
        per_layer=False,
    )
)
register_granularity(
    Granularity(
        "lstm-unit",
        "hidden units of an LSTM/GRU/RNN layer: the unit's row in every gate and the weights reading it",
        ("lstm",),
        True,
        unit="lstm-unit",
    )
)
register_granularity(
    Granularity(
        "layer",
        "whole residual branches (the addition keeps only its skip input): every weight of the branch; the ratio "
        "is the share of the branches, ranked by mean score",
        ("linear", "conv", "norm", "lstm", "attention", "embedding"),
        True,
        unit="branch",
        per_layer=False,
    )
)

_BUILTIN = frozenset(_REGISTRY)
