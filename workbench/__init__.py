"""workbench: a Jupyter-native workbench for pruning live PyTorch models.

>>> import workbench as wb
>>> sorted(wb.criteria.available())[:3]
['l1', 'l2', 'magnitude']
"""

from . import criteria, demo, errors, masks
from .bench import HistoryEntry, Workbench
from .errors import (
    CriterionError,
    DataError,
    GranularityError,
    ModelError,
    PlanError,
    TargetError,
    WorkbenchError,
    WorkbenchWarning,
)
from .evaluate import evaluate
from .plan import LayerPlan, Plan
from .report import Report
from .targets import Target, Targets, find_targets

__version__ = "0.1.0"

__all__ = [
    "CriterionError",
    "DataError",
    "GranularityError",
    "HistoryEntry",
    "LayerPlan",
    "ModelError",
    "Plan",
    "PlanError",
    "Report",
    "Target",
    "TargetError",
    "Targets",
    "Workbench",
    "WorkbenchError",
    "WorkbenchWarning",
    "criteria",
    "demo",
    "errors",
    "evaluate",
    "find_targets",
    "masks",
]
