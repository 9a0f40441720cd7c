"""States without copies: evaluate an earlier (or undone) history entry of the live model, then come back.

"Before" and "after" are history entries (0 = dense, i = after step i). To look at entry `i` the workbench moves its
mask store there with the same exact undo/redo it uses for `bench.goto`, runs the analysis, and moves back in a
``finally``: a *transaction* on the live model, restored bitwise also when the analysis raises or is interrupted.
No copy of the model is kept; the history (including steps that could be redone) is left exactly as it was.

>>> import torch, workbench as wb
>>> model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
>>> bench = wb.Workbench(model, [(torch.randn(32, 8), torch.randint(0, 3, (32,)))])
>>> _ = bench.apply(wb.Plan.uniform(0.5))
>>> with at(bench, 0):
...     float((model[0].weight == 0).float().mean())   # dense inside the transaction
0.0
>>> bench.store.position, round(float((model[0].weight == 0).float().mean()), 2)
(1, 0.5)
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from .._interrupt import settle
from ..adapter import call, logits_of
from ..adapter import cat as cat_inputs
from ..adapter import size as size_inputs
from ..adapter import take as take_inputs
from ..errors import DataError, WorkbenchError, WorkbenchWarning
from ..evaluate import batches, model_device

__all__ = [
    "PRIMARY",
    "StateError",
    "at",
    "default_pair",
    "input_embeddings",
    "label_of",
    "logits",
    "prediction",
    "primary",
    "rebuild",
    "resolve",
    "take",
]


class StateError(WorkbenchError, IndexError):
    """A history index that does not exist, or a comparison that needs a step that was never applied."""


def resolve(state, index: int | None) -> int:
    """The history entry `index` as a position in ``0..len(history)-1``. Negative indices count from the end of
    `bench.history` (-1 = the latest entry); None means the current state."""
    n = len(state.store.steps) + 1
    if index is None:
        return state.store.position
    if isinstance(index, bool) or not hasattr(index, "__index__"):
        raise StateError(f"a history index must be an int (0 = dense, -1 = latest entry), got {index!r}")
    i = index.__index__()
    j = i + n if i < 0 else i
    if not 0 <= j < n:
        raise StateError(
            f"history entry {i} does not exist: this bench has entries 0..{n - 1} (0 = dense, -1 = latest, "
            f"current = {state.store.position}); see bench.history"
        )
    return j


def default_pair(state, before: int | None = None, after: int | None = None) -> tuple[int, int]:
    """The two states a comparison looks at: by default the state before the current step vs now."""
    if before is None and after is None and state.store.position == 0:
        raise StateError(
            "nothing to compare: no pruning step is applied yet. Apply a plan first (bench.apply(plan)), or name "
            "the two states, e.g. before=0, after=1 (see bench.history)"
        )
    a = resolve(state, after) if after is not None else state.store.position
    b = resolve(state, before) if before is not None else max(a - 1, 0)
    return b, a


def label_of(state, index: int) -> str:
    """A short name of a history entry for plots: 'dense' or 'step i'."""
    return "dense" if index == 0 else f"step {index}"


@contextmanager
def at(state, index: int | None) -> Iterator[int]:
    """Temporarily put the live model in history entry `index` (a transaction); yields the resolved index.

    The store moves with the bench's exact undo/redo (never dropping a step that could be redone; each move all or
    nothing, Ctrl-C held back while it writes) and moves back in a ``finally``, so the model is restored bitwise also
    when the analysis raises or is interrupted. The bench's lock is held throughout (no other thread changes the
    model meanwhile), and weights edited outside the workbench make it refuse (`OutsideEditError`) before moving.
    """
    store = state.store
    with store.transaction(check=False):  # holds the bench's lock: position and moves belong together
        target = resolve(state, index)
        start = store.position
        if target == start:
            yield target
            return
        store.check()  # weights edited behind the store's back: refuse before moving
        store.goto_(target)  # exact undo/redo (all or nothing); training steps swap their trained weights too
        try:
            yield target
        finally:
            settle(lambda: store.position == start, lambda: store.goto_(start))


# helpers the effect analyses share --------------------------------------------------------------------------
def logits(model: nn.Module, x: Any) -> Tensor:
    """The model's predictions for inputs `x` (its logits, whatever form its output takes: `adapter.logits_of`)."""
    return logits_of(call(model, x))


def take(
    data: Iterable, samples: int | None, device: torch.device | nn.Module, what: str = "samples", adapter: Any = None
) -> tuple[Any, Tensor]:
    """The first `samples` inputs and labels of `data` as two tensors (all of them when None), on `device` (given the
    model: on its device, inputs in its dtype). Asking for more than the data holds clamps to its size with a
    warning."""
    if samples is not None and (isinstance(samples, bool) or int(samples) != samples or samples < 1):
        raise DataError(f"{what} must be a positive integer, got {samples!r}")
    xs, ys, n = [], [], 0
    for i, (x, y) in enumerate(batches(data, device, adapter=adapter)):
        primary(x, f"batch {i}")  # the effect analyses work on one input tensor: refuse other forms here
        xs.append(x)
        ys.append(y)
        n += size_inputs(x)
        if samples is not None and n >= samples:
            break
    if n == 0:
        raise DataError("the data yielded no samples; pass a non-empty DataLoader of (inputs, labels)")
    x, y = cat_inputs(xs), torch.cat(ys)
    if samples is not None and samples > n:
        warnings.warn(f"{what}={samples} but the data holds only {n}; using all {n}", WorkbenchWarning, stacklevel=3)
    return (x, y) if samples is None else (take_inputs(x, samples), y[:samples])


# the input of a dict of model inputs the effect analyses attribute on or perturb (Hugging Face names), in order
PRIMARY = ("pixel_values", "input_values", "input_features", "inputs_embeds", "input_ids")


def primary(x: Any, where: str = "the batch") -> tuple[str | None, Tensor, dict[str, Any]]:
    """``(key, tensor, rest)``: the one input tensor the effect analyses work on and the other model inputs, kept
    as they are: `x` itself (key None), or of a dict of keyword inputs the first of `PRIMARY` (``pixel_values``,
    ``input_ids``, ...) or its only tensor. `rebuild` puts a replacement back."""
    if isinstance(x, Tensor):
        return None, x, {}
    if isinstance(x, dict):
        key = next((k for k in PRIMARY if isinstance(x.get(k), Tensor)), None)
        tensors = [k for k, v in x.items() if isinstance(v, Tensor)]
        if key is None and len(tensors) == 1:
            key = tensors[0]
        if key is not None:
            return key, x[key], {k: v for k, v in x.items() if k != key}
    raise DataError(
        f"{where} has inputs of type {type(x).__name__}; the effect analyses work on one input tensor per batch, "
        f"or a dict of model inputs holding one of {list(PRIMARY)} (wrap another multi-input model so it takes a "
        "single tensor)"
    )


def rebuild(key: str | None, value: Tensor, rest: dict[str, Any]) -> Any:
    """The model's inputs with `value` in place of the primary input (`primary`)."""
    return value if key is None else {**rest, key: value}


def input_embeddings(model: nn.Module) -> nn.Embedding | None:
    """A Hugging Face model's token embeddings (`get_input_embeddings`), or None (vision and audio models raise)."""
    get = getattr(model, "get_input_embeddings", None)
    try:
        emb = get() if callable(get) else None
    except (NotImplementedError, AttributeError):
        return None
    return emb if isinstance(emb, nn.Embedding) else None


def prediction(out: Tensor) -> Tensor:
    """Class scores per sample: a classifier's ``[N, classes]`` as they are; of per-position outputs
    ``[N, positions, classes]`` (a language model) the last position's (the next token after the inputs)."""
    return out[:, -1] if out.dim() == 3 else out


def grad_context(model: nn.Module):
    """A context for input gradients: cuDNN's RNN backward refuses eval mode, so it is switched off on CUDA."""
    if model_device(model).type == "cuda":
        return torch.backends.cudnn.flags(enabled=False)
    return contextlib.nullcontext()


def data_range(data: Iterable, device: torch.device) -> tuple[float, float]:
    """(min, max) of the inputs of `data` (one pass), or its declared `x_range`."""
    declared = getattr(data, "x_range", None)
    if declared is not None:
        return float(declared[0]), float(declared[1])
    lo, hi = float("inf"), float("-inf")
    for x, _ in batches(data, device):
        if isinstance(x, dict) and any(isinstance(x.get(k), Tensor) for k in PRIMARY):
            x = primary(x)[1]
        if isinstance(x, Tensor) and x.numel() and x.dtype != torch.bool:
            lo, hi = min(lo, float(x.min())), max(hi, float(x.max()))
    if lo > hi:
        raise DataError("cannot derive the input range from the data (no input tensors); pass x_range=(lo, hi)")
    return lo, hi
