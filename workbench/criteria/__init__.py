"""Importance criteria: a registry of scores, lower = pruned first.

>>> import workbench as wb
>>> {"magnitude", "l1", "l2", "random"} <= set(wb.criteria.available())
True
"""

from . import activation as _activation  # noqa: F401  (registers entropy, apoz)
from . import bn_scale as _bn_scale  # noqa: F401  (registers bn_scale)
from . import gradient as _gradient  # noqa: F401  (registers taylor, obd, snip, grasp)
from . import magnitude as _magnitude  # noqa: F401  (registers the built-ins)
from . import synflow as _synflow  # noqa: F401  (registers synflow)
from . import wanda as _wanda  # noqa: F401  (registers wanda, wanda-row)
from ._registry import Criterion, ScoreContext, available, get_criterion, register_criterion

__all__ = ["Criterion", "ScoreContext", "available", "get_criterion", "register_criterion"]
