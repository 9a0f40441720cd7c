"""The inputs `compile` runs a model on, and how it compares outputs."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..adapter import call, cat, logits_of, repeat, size, split
from .backends import CompileError


def _as_inputs(x: Any, where: str) -> Any:
    """Model inputs as compile runs them (`workbench.adapter.call`): a tuple of positional tensors, or a dict of
    keyword inputs (Hugging Face batches without their labels) holding at least one tensor."""
    if isinstance(x, Tensor):
        return (x,)
    if isinstance(x, (list, tuple)) and x and all(isinstance(v, Tensor) for v in x):
        return tuple(x)
    if isinstance(x, Mapping) and any(isinstance(v, Tensor) for v in x.values()):
        return dict(x)
    raise CompileError(
        f"{where} must be a tensor, a tuple of tensors (positional model inputs) or a dict of keyword inputs "
        f"(e.g. {{'input_ids': ..., 'attention_mask': ...}}), got {type(x).__name__}"
    )


def _map(x: Any, fn) -> Any:
    """`fn` applied to every tensor of inputs `x` (tuple or dict), other values kept."""
    if isinstance(x, Mapping):
        return {k: fn(v) if isinstance(v, Tensor) else v for k, v in x.items()}
    return tuple(fn(v) if isinstance(v, Tensor) else v for v in x)


def _batch(example: Any, data: Iterable | None, n: int, splitter=split) -> Any:
    """`n` input rows: real rows from `data` where there are enough, else `example` rows repeated."""
    got: list[Any] = []
    if data is not None:
        count = 0
        for batch in data:
            x, _ = splitter(batch)
            if not isinstance(x, (Tensor, list, tuple, Mapping)):
                break
            xs = _as_inputs(x, "data inputs")
            if got and (type(xs) is not type(got[0]) or len(xs) != len(got[0])):
                break
            got.append(xs)
            count += size(xs)
            if count >= n:
                break
    if got:
        try:
            return repeat(cat(got), n)
        except (RuntimeError, KeyError, TypeError):  # batches of different sequence lengths: the first one alone
            return repeat(got[0], n)
    if example is None:
        return None
    return repeat(_as_inputs(example, "example_inputs"), n)


def _cast(xs: Any, device: torch.device, dtype: torch.dtype | None) -> Any:
    return _map(
        xs, lambda v: v.to(device=device, dtype=dtype if dtype is not None and v.is_floating_point() else v.dtype)
    )


def _close(a: Tensor, b: Tensor, atol: float, rtol: float) -> tuple[bool, float]:
    a, b = a.float(), b.float()
    if a.shape != b.shape:
        return False, math.inf
    err = float((a - b).abs().max()) if a.numel() else 0.0
    return bool(torch.allclose(a, b, atol=atol, rtol=rtol)), err


def _out(y: Any) -> Tensor:
    """The outputs compared: a tensor, every tensor of a tuple, or the predictions of a dict/ModelOutput."""
    if isinstance(y, Tensor):
        return y
    if isinstance(y, (list, tuple)) and y and all(isinstance(v, Tensor) for v in y):
        return torch.cat([v.reshape(-1).float() for v in y])
    try:
        return logits_of(y)
    except Exception:
        raise CompileError(
            "compile compares model outputs, which must be a tensor, a tuple of tensors, or a dict/ModelOutput with "
            f"'logits', got {type(y).__name__}"
        ) from None


def _capture(model: nn.Module, xs: Any) -> dict[str, Tensor]:
    """The input of the first call of every Linear and Conv2d during one forward pass (hooks on our copy, removed
    after)."""
    seen: dict[str, Tensor] = {}
    handles = []
    for name, m in model.named_modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):

            def hook(mod, args, name=name):
                if name not in seen and args and isinstance(args[0], Tensor):
                    seen[name] = args[0].detach()

            handles.append(m.register_forward_pre_hook(hook))
    try:
        with torch.inference_mode():
            call(model, xs)
    finally:
        for h in handles:
            h.remove()
    return seen
