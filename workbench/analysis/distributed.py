"""Sensitivity points on a Dask cluster: the model and the data go to every worker once, points run as tasks.

`bench.sensitivity(..., executor=client)` with a `distributed.Client` (or its `client.get_executor()`) scatters a
copy of the model and the evaluation data to every worker (``broadcast=True``), then submits one task per point
carrying only that point's masks. A worker evaluates the point on a structural clone of its copy (full forward
passes: nothing is traced on the worker) and returns the metric. Tasks are pure functions of their inputs, so a
worker that dies mid-scan has its points rerun elsewhere by the scheduler and the result does not change. The
live model is never sent anywhere it could be changed: the workers hold copies.

The same works on a multi-machine cluster (``Client("tcp://scheduler:8786")``); the model classes must be
importable on the workers (the same package installed), and the data must pickle (tensors, lists of batches, a
`DataLoader` over an in-memory dataset).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

from ..adapter import Adapter
from ._graph import full_outputs, masked_params

__all__ = ["dask_client", "remote_point"]


def dask_client(executor: Any) -> Any | None:
    """The `distributed.Client` behind `executor` (a Client, or the executor `client.get_executor()` returns), or
    None for any other executor."""
    try:
        from distributed import Client
    except ImportError:
        return None
    if isinstance(executor, Client):
        return executor
    inner = getattr(executor, "_client", None)
    return inner if isinstance(inner, Client) else None


def remote_point(
    model: nn.Module, data: Iterable, masks: dict[str, Tensor], metric: Any, task: str | None, batch_fn: Any
) -> float:
    """The metric of `model` with `masks` applied (on a structural clone), as a worker computes it."""
    from .sensitivity import _metric_value

    model.eval()
    adapter = Adapter(model, task=task, batch_fn=batch_fn)
    params = masked_params(model, masks)
    with torch.inference_mode():
        if isinstance(metric, str):
            return _metric_value(adapter, full_outputs(model, params, data, adapter), metric)
        from ._graph import clone_with

        return float(metric(clone_with(model, params).eval(), data))


def scatter(client: Any, model: nn.Module, data: Iterable) -> tuple[Any, Any]:
    """Send a copy of `model` (its current, pruned state) and `data` to every worker once."""
    twin = copy.deepcopy(model).eval()
    for p in twin.parameters():
        p.requires_grad_(False)
    if not isinstance(data, (list, tuple)):
        data = list(data)  # a DataLoader's batches, materialised once here rather than re-iterated remotely
    return client.scatter(twin, broadcast=True, hash=False), client.scatter(data, broadcast=True, hash=False)


def submit_points(
    client: Any,
    model_f: Any,
    data_f: Any,
    jobs: list[tuple[int, int]],
    masks_of: Callable[[int, int], dict[str, Tensor]],
    metric: Any,
    task: str | None,
    batch_fn: Any,
) -> dict[Any, tuple[int, int]]:
    """One task per point; returns future -> (row, column)."""
    return {
        client.submit(remote_point, model_f, data_f, masks_of(i, j), metric, task, batch_fn, pure=False): (i, j)
        for i, j in jobs
    }
