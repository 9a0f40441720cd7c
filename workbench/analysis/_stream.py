"""Helpers for analyses of a stream of batches against a reference state (`monitor`, `suggest_easing`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import Tensor

from ..errors import WorkbenchError
from ..evaluate import _split


def _reference_index(bench, reference: Any) -> int | None:
    if isinstance(reference, str):
        if reference != "dense":
            raise WorkbenchError(f"a reference given by name must be 'dense' (history entry 0), got {reference!r}")
        reference = 0
    if isinstance(reference, bool) or not isinstance(reference, int):
        return None
    if bench is None:
        raise WorkbenchError(
            f"reference={reference!r} names a history entry, which needs a Workbench as the pruned model; "
            "pass the bench, or a reference nn.Module"
        )
    from .states import resolve

    return resolve(bench, reference)


def _shape_of(x: Any) -> tuple[int, ...] | None:
    return tuple(x.shape[1:]) if isinstance(x, Tensor) else None


def _pairs(batches: Iterable) -> Iterable[tuple[Any, Tensor | None]]:
    for batch in batches:
        if isinstance(batch, Tensor):
            yield batch, None
        else:
            yield _split(batch)
