"""Analyses of the live model. None of them writes to the model: see `_graph.py`."""

from .sensitivity import AnalysisError, SensitivityResult, sensitivity

__all__ = ["AnalysisError", "SensitivityResult", "sensitivity"]
