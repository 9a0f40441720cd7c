"""Importance criteria: a registry of scores, lower = pruned first.

>>> import workbench as wb
>>> {"magnitude", "l1", "l2", "random"} <= set(wb.criteria.available())
True
"""

from . import activation as _activation  # noqa: F401  (registers entropy, apoz)
from . import magnitude as _magnitude  # noqa: F401  (registers the built-ins)
from ._registry import Criterion, ScoreContext, available, get_criterion, register_criterion

__all__ = ["Criterion", "ScoreContext", "available", "get_criterion", "register_criterion"]
