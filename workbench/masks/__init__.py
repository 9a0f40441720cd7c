"""Masks: selecting what a plan removes, and applying it in place with exact undo."""

from .granularity import (
    Granularity,
    available_granularities,
    get_granularity,
    register_granularity,
    structured_granularities,
    unregister_granularity,
)
from .nm import is_nm_sparse, nm_mask
from .select import Selection, n_to_prune, select
from .store import MaskStore, Step, enforce
from .topk import lowest_k

__all__ = [
    "Granularity",
    "MaskStore",
    "Selection",
    "Step",
    "available_granularities",
    "enforce",
    "get_granularity",
    "is_nm_sparse",
    "lowest_k",
    "n_to_prune",
    "nm_mask",
    "register_granularity",
    "select",
    "structured_granularities",
    "unregister_granularity",
]
