"""The granularity registry: the units pruning removes (a weight, a neuron, a filter, ...)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import GranularityError, suggest

__all__ = ["Granularity", "available_granularities", "get_granularity", "register_granularity"]


@dataclass(frozen=True)
class Granularity:
    """A unit of pruning. `kinds`: target kinds it applies to; `structured`: it removes whole coupled
    channel groups (so a physical shrink is possible) rather than single weights."""

    name: str
    summary: str
    kinds: tuple[str, ...]
    structured: bool


_REGISTRY: dict[str, Granularity] = {}


def register_granularity(g: Granularity, *, overwrite: bool = False) -> Granularity:
    if g.name in _REGISTRY and not overwrite:
        raise ValueError(f"granularity {g.name!r} is already registered; pass overwrite=True to replace it")
    _REGISTRY[g.name] = g
    return g


def get_granularity(name: str) -> Granularity:
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise GranularityError(
            f"unknown granularity {name!r}.{suggest(str(name), available_granularities(), 'granularity')}"
        ) from None


def available_granularities() -> list[str]:
    return list(_REGISTRY)


register_granularity(
    Granularity(
        "weight",
        "single weights (unstructured), per layer or global",
        ("linear", "conv", "lstm", "attention", "norm", "embedding"),
        False,
    )
)
register_granularity(
    Granularity("neuron", "output rows of a Linear layer, with everything coupled to them", ("linear",), True)
)
register_granularity(
    Granularity("filter", "output channels of a conv layer, with everything coupled to them", ("conv",), True)
)
