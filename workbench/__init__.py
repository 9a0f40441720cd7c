"""workbench: a Jupyter-native workbench for pruning live PyTorch models.

>>> import workbench as wb
>>> {'l1', 'l2', 'magnitude'} <= set(wb.criteria.available())
True
"""

from . import criteria, demo, errors, masks, sparse
from .bench import HistoryEntry, Workbench
from .compare import CompareResult, available_strategies, compare, register_strategy
from .errors import (
    CriterionError,
    DataError,
    DemoWeightsError,
    ExportError,
    GranularityError,
    ModelError,
    NotABenchError,
    OutsideEditError,
    PlanError,
    TargetError,
    WorkbenchError,
    WorkbenchWarning,
)
from .evaluate import Metric, evaluate
from .monitor import EasingSuggestion, Monitor, MonitorResult, monitor, suggest_easing
from .plan import LayerPlan, Plan
from .quantize import QuantProfile, quantize, quantize_profile
from .recommend import Recommendation, recommend
from .report import Report
from .state import State, as_state
from .targets import Target, Targets, find_targets

__version__ = "0.1.0"

_LAZY = (
    "analysis",
    "llm",
    "sparse",
    "training",
    "ui",
    "viz",
)  # imported on first use: the core needs no matplotlib/ipywidgets


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")


__all__ = [
    "CompareResult",
    "CriterionError",
    "DataError",
    "DemoWeightsError",
    "EasingSuggestion",
    "ExportError",
    "GranularityError",
    "HistoryEntry",
    "LayerPlan",
    "Metric",
    "ModelError",
    "Monitor",
    "MonitorResult",
    "NotABenchError",
    "OutsideEditError",
    "Plan",
    "PlanError",
    "QuantProfile",
    "Recommendation",
    "Report",
    "State",
    "Target",
    "TargetError",
    "Targets",
    "Workbench",
    "WorkbenchError",
    "WorkbenchWarning",
    "as_state",
    "available_strategies",
    "compare",
    "criteria",
    "demo",
    "errors",
    "evaluate",
    "find_targets",
    "llm",
    "masks",
    "monitor",
    "quantize",
    "quantize_profile",
    "recommend",
    "register_strategy",
    "sparse",
    "suggest_easing",
    "training",
]
