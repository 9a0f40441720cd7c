"""Masks: selecting what a plan removes, and applying it in place with exact undo."""

from .granularity import Granularity, available_granularities, get_granularity, register_granularity
from .select import Selection, n_to_prune, select
from .store import MaskStore, Step, enforce

__all__ = [
    "Granularity",
    "MaskStore",
    "Selection",
    "Step",
    "available_granularities",
    "enforce",
    "get_granularity",
    "n_to_prune",
    "register_granularity",
    "select",
]
