"""Errors and warnings a person can act on: each names the layer, the value and the fix."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "CriterionError",
    "DataError",
    "DemoWeightsError",
    "ExportError",
    "GranularityError",
    "ModelError",
    "NotABenchError",
    "OutsideEditError",
    "PlanError",
    "TargetError",
    "WorkbenchError",
    "WorkbenchWarning",
    "suggest",
]


class WorkbenchError(Exception):
    """Base class of every error the workbench raises on bad input."""


class PlanError(WorkbenchError, ValueError):
    """A plan is malformed or does not fit the model (ratio, names, JSON shape, coupled groups)."""


class TargetError(PlanError, KeyError):
    """A plan or call names a layer that is not a prunable target."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class GranularityError(PlanError):
    """A granularity is unknown, or a layer does not support it."""


class CriterionError(PlanError, KeyError):
    """A criterion name is not registered."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ModelError(WorkbenchError, ValueError):
    """The model cannot be pruned as asked (no prunable layers, NaN/inf weights, ...)."""


class DataError(WorkbenchError, ValueError):
    """The evaluation data is empty, of the wrong form, or on another device than the model."""


class DemoWeightsError(WorkbenchError):
    """The demo weights shipped with the package are missing, altered, or made for another model version."""


class NotABenchError(WorkbenchError, TypeError):
    """A function that works on a bench got something else (see `workbench.state.as_state`)."""


class OutsideEditError(WorkbenchError, RuntimeError):
    """Weights the workbench recorded were changed behind its back (an optimizer step, ``model.double()``, a layer
    swapped, ``load_state_dict``): undo or redo would blend recorded values into the edited tensors. `edits` maps
    each tensor's name to what happened to it."""

    def __init__(self, message: str, edits: dict[str, str] | None = None):
        super().__init__(message)
        self.edits = dict(edits or {})


class ExportError(WorkbenchError, ValueError):
    """A module cannot be exported or loaded as asked: unknown format, custom ops, an export folder whose files
    are missing, changed, truncated or malformed, or that names code `load` does not run without being told to."""


class WorkbenchWarning(UserWarning):
    """Something works, but not the way a user might assume (tied weights pruned once, ...)."""


def suggest(name: str, choices: Iterable[str], what: str = "name") -> str:
    """Return a ' Did you mean ...?' hint for a misspelt name, or a list of the valid choices.

    >>> suggest("fetures.0", ["features.0", "classifier.1"])
    " Did you mean 'features.0'?"
    """
    choices = list(choices)
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    if close:
        return " Did you mean " + " or ".join(repr(c) for c in close) + "?"
    shown = ", ".join(repr(c) for c in choices[:12]) + (", ..." if len(choices) > 12 else "")
    return f" Valid {what}s: {shown}." if choices else ""
