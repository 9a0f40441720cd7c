"""Batches and outputs in every form the adapter accepts (see `workbench.adapter`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import DataError

IGNORE = -100
LABEL_KEYS = ("labels", "label")
# the keyword inputs that carry a batch's samples along dim 0 in Hugging Face models, in order of preference
PRIMARY_KEYS = ("input_ids", "pixel_values", "input_values", "input_features", "inputs_embeds", "x", "input")
_PAIRS = (("x", "y"), ("input", "label"), ("inputs", "labels"), ("input", "target"))
FORMS = (
    "(inputs, target) pairs (a DataLoader over a TensorDataset; inputs a tensor, a tuple, or a dict of keyword "
    "inputs); Hugging Face dicts such as {'input_ids', 'attention_mask', 'labels'} or {'pixel_values', 'labels'}; "
    "{'x', 'y'} / {'inputs', 'labels'} dicts; or any batch through batch_fn=lambda batch: (inputs, target)"
)


def split(batch: Any, batch_fn: Callable[[Any], tuple[Any, Any]] | None = None) -> tuple[Any, Tensor | None]:
    """``(inputs, target)`` of one batch in any accepted form (see the module docstring); target None: unlabelled."""
    if batch_fn is not None:
        try:
            out = batch_fn(batch)
        except Exception as e:
            raise DataError(f"batch_fn raised {type(e).__name__}: {e}") from e
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            raise DataError(f"batch_fn must return (inputs, target), got {type(out).__name__}")
        return out[0], out[1]
    if isinstance(batch, Mapping):
        for xk, yk in _PAIRS:
            if xk in batch and yk in batch and len(batch) == 2:
                return batch[xk], batch[yk]
        keys = [k for k in batch if k not in LABEL_KEYS]
        if not keys:
            raise DataError(f"a batch dict has no inputs besides its labels (keys {list(batch)}); accepted: {FORMS}")
        target = next((batch[k] for k in LABEL_KEYS if k in batch), None)
        return {k: batch[k] for k in keys}, target
    if isinstance(batch, (list, tuple)) and len(batch) == 2:
        return batch[0], batch[1]
    if isinstance(batch, (list, tuple)) and len(batch) == 1:
        return batch[0], None
    if isinstance(batch, Tensor):
        return batch, None
    raise DataError(f"cannot read a batch of type {type(batch).__name__}; accepted: {FORMS}")


def call(model: nn.Module, x: Any) -> Any:
    """Run `model` on inputs `x`: a dict goes as keyword arguments, a tuple/list as positional ones."""
    if isinstance(x, Mapping):
        return model(**x)
    if isinstance(x, (list, tuple)):
        return model(*x)
    return model(x)


def logits_of(out: Any) -> Tensor:
    """The prediction tensor of a model output (see the module docstring)."""
    if isinstance(out, Tensor):
        return out
    if isinstance(out, Mapping):
        if "logits" in out and isinstance(out["logits"], Tensor):
            return out["logits"]
        for v in out.values():
            if isinstance(v, Tensor) and v.dim() > 0:
                return v
    elif isinstance(out, (list, tuple)) and out:
        return logits_of(out[0])
    else:
        value = getattr(out, "logits", None)
        if isinstance(value, Tensor):
            return value
        if dataclasses.is_dataclass(out):
            for f in dataclasses.fields(out):
                v = getattr(out, f.name)
                if isinstance(v, Tensor) and v.dim() > 0:
                    return v
    raise DataError(
        f"cannot find the predictions in a model output of type {type(out).__name__}: accepted are a tensor, a tuple "
        "(its first element), a dict or ModelOutput with 'logits', or an object with a .logits tensor"
    )


def primary(x: Any) -> Tensor | None:
    """The input tensor whose first dimension counts the batch's samples (None if there is none)."""
    if isinstance(x, Tensor):
        return x
    if isinstance(x, Mapping):
        for k in PRIMARY_KEYS:
            if isinstance(x.get(k), Tensor):
                return x[k]
        return next((v for v in x.values() if isinstance(v, Tensor) and v.dim() > 0), None)
    if isinstance(x, (list, tuple)):
        return next((v for v in x if isinstance(v, Tensor) and v.dim() > 0), None)
    return None


def size(x: Any) -> int:
    """Samples in inputs `x` (the first dimension of its primary tensor)."""
    p = primary(x)
    return int(p.shape[0]) if p is not None and p.dim() else 1


def take(x: Any, n: int, start: int = 0) -> Any:
    """Samples ``start .. start + n`` of inputs `x` (every tensor with the batch's first dimension is sliced)."""
    b = size(x)

    def cut(v: Any) -> Any:
        if isinstance(v, Tensor) and v.dim() and v.shape[0] == b:
            return v[start : start + n]
        return v

    if isinstance(x, Mapping):
        return {k: cut(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(cut(v) for v in x)
    return cut(x)


def repeat(x: Any, n: int) -> Any:
    """`n` samples of inputs `x`, its rows repeated where it has fewer (tensors without the batch's first dimension,
    flags and scalars are kept)."""
    b = size(x)
    idx = torch.arange(n) % b

    def rows(v: Any) -> Any:
        if isinstance(v, Tensor) and v.dim() and v.shape[0] == b:
            return v[idx.to(v.device)]
        return v

    if isinstance(x, Mapping):
        return {k: rows(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(rows(v) for v in x)
    return rows(x)


def cat(parts: list[Any]) -> Any:
    """Inputs of several batches concatenated along the samples (the inverse of `take`)."""
    first = parts[0]
    if isinstance(first, Tensor):
        return torch.cat(parts)
    if isinstance(first, Mapping):
        return {k: torch.cat([p[k] for p in parts]) if isinstance(first[k], Tensor) else first[k] for k in first}
    return type(first)(torch.cat([p[i] for p in parts]) for i in range(len(first)))
