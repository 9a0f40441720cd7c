"""The backend registry: how `workbench.sparse.compile` can turn a masked model into a faster one.

Two levels:

- **model** backends rewrite the whole copy: ``dense`` (the masked weights as they are; the baseline, always
  valid) and ``shrink`` (fully pruned coupled channels physically removed, `workbench.sparse.shrink`);
- **layer** backends replace single `nn.Linear` layers: ``csr`` (CPU and CUDA), ``bsr`` and
  ``semi_structured`` (CUDA only). Each has a `check(linear, device)` that says why it cannot take a layer
  ("" when it can) and a `convert(linear)` that builds the replacement.

>>> [b for b in available_backends()]
['dense', 'shrink', 'csr', 'bsr', 'semi_structured']
>>> get_backend("csr").devices
('cpu', 'cuda')
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .._registry import Registry
from ..errors import WorkbenchError, suggest
from ..masks.nm import is_nm_sparse
from .modules import BSRLinear, SemiStructuredLinear, SparseConv2d, SparseLinear

__all__ = ["Backend", "CompileError", "available_backends", "get_backend", "register_backend"]


class CompileError(WorkbenchError, ValueError):
    """A model cannot be compiled as asked (unknown backend, wrong device/dtype/shape, outputs would change)."""


CheckFn = Callable[[nn.Module, torch.device], str]
ConvertFn = Callable[[nn.Module], nn.Module]
BuildFn = Callable[[Any], "nn.Module | None"]  # CompileState -> the rewritten copy, or None (nothing to rewrite)


@dataclass(frozen=True)
class Backend:
    """A way to compile: `level` ``"model"`` or ``"layer"``; `devices` it runs on; `requires` what it needs,
    in words (used in errors); layer backends have `check` and `convert`; a model backend's `build(state)`
    rewrites the whole copy (`workbench.sparse.stages.CompileState`: ``state.ref`` the masked copy, ``state.xs``
    the inputs, ``state.removed``/``state.notes`` to report) and returns it, or None when it changes nothing;
    `compile(backend="auto")` tries every model backend with a `build` and keeps the fastest measured. `families`:
    the kinds of pruning it turns into speed or size (``"structured"``, ``"unstructured"``, ``"N:M"``, ``"block"``;
    `recommend` compiles a candidate with each backend of its family), `dtype` the precision it needs (None: any)."""

    name: str
    summary: str
    level: str
    devices: tuple[str, ...]
    requires: str = ""
    check: CheckFn | None = None
    convert: ConvertFn | None = None
    build: BuildFn | None = None
    families: tuple[str, ...] = ()
    dtype: torch.dtype | None = None


_REGISTRY: Registry[Backend] = Registry("backend", CompileError)


def register_backend(backend: Backend, *, overwrite: bool = False) -> Backend:
    """Add `backend` to the registry (a taken name raises ValueError unless `overwrite`): `compile` finds it by
    name, ``auto`` tries it, `recommend` uses it for its `families`, `load` reads its layers back."""
    if backend.level not in ("model", "layer"):
        raise ValueError(f"backend level must be 'model' or 'layer', got {backend.level!r}")
    return _REGISTRY.register(backend.name, backend, overwrite=overwrite)


def get_backend(name: str) -> Backend:
    """The backend registered as `name`; a CompileError names the closest ones."""
    if name in _REGISTRY:
        return _REGISTRY.get(name)
    names = _REGISTRY.names()
    raise CompileError(
        f"unknown backend {name!r}.{suggest(str(name), [*names, 'auto'], 'backend')} "
        f"Available: 'auto', {', '.join(map(repr, names))}."
    )


def available_backends(pattern: str | None = None) -> list[str]:
    """Names of the registered backends, in registration order (`pattern`: a glob such as ``"*sparse*"``)."""
    return _REGISTRY.names(pattern)


def _shrink_build(state: Any) -> nn.Module | None:
    from .stages import shrink_build

    return shrink_build(state)


def _linear_2d(m: nn.Module) -> str:
    if not isinstance(m, nn.Linear):
        return f"only Linear layers are converted, not {type(m).__name__}"
    if not m.weight.is_floating_point():
        return f"its weight is {m.weight.dtype}, not floating point"
    return ""


def _check_csr(m: nn.Module, device: torch.device) -> str:
    if isinstance(m, nn.Conv2d):
        if m.groups != 1 or m.padding_mode != "zeros" or isinstance(m.padding, str):
            return "only Conv2d layers with groups=1 and explicit zero padding are converted"
        return "" if m.weight.is_floating_point() else f"its weight is {m.weight.dtype}, not floating point"
    return _linear_2d(m)


def _convert_csr(m: nn.Module) -> nn.Module:
    return SparseConv2d.from_conv(m) if isinstance(m, nn.Conv2d) else SparseLinear.from_linear(m)  # type: ignore[arg-type]


def _bsr_blocksize(w: torch.Tensor) -> tuple[tuple[int, int] | None, str]:
    rows, cols = w.shape
    for b in (32, 16, 8):
        if rows % b or cols % b:
            continue
        nz = (w.reshape(rows // b, b, cols // b, b) != 0).any(3).any(1)
        if float(nz.float().mean()) <= 0.5:
            return (b, b), ""
    return None, "no 32/16/8 square block size divides its shape with at least half of the blocks all zero"


def _check_bsr(m: nn.Module, device: torch.device) -> str:
    why = _linear_2d(m)
    if why:
        return why
    if device.type != "cuda":
        return "BSR needs a CUDA device (torch's CPU BSR matmul is slower than dense)"
    return _bsr_blocksize(m.weight.detach())[1]


def _convert_bsr(m: nn.Module) -> nn.Module:
    size, why = _bsr_blocksize(m.weight.detach())
    if size is None:
        raise CompileError(why)
    return BSRLinear.from_linear(m, size)  # type: ignore[arg-type]


SEMI_STRUCTURED_NEEDS = (
    "a CUDA device with sparse tensor cores (NVIDIA Ampere or newer), fp16 or bf16 weights "
    "(compile(..., dtype=torch.float16)), Linear weights whose out x in features are multiples of 32 x 64, "
    "and a 2:4 pattern along the inputs (bench.apply(wb.Plan.uniform(0.5, granularity='2:4')))"
)


def _check_semi(m: nn.Module, device: torch.device) -> str:
    why = _linear_2d(m)
    if why:
        return why
    if device.type != "cuda":
        return f"2:4 semi-structured sparsity needs {SEMI_STRUCTURED_NEEDS}; this runs on {device.type}"
    if torch.cuda.get_device_capability(device)[0] < 8:
        return "2:4 semi-structured sparsity needs an NVIDIA GPU of compute capability 8.0 (Ampere) or newer"
    w = m.weight
    if w.dtype not in (torch.float16, torch.bfloat16):
        return f"its weight is {w.dtype}; 2:4 kernels need fp16/bf16: compile(..., dtype=torch.float16)"
    if w.shape[0] % 32 or w.shape[1] % 64:
        return f"its weight is {tuple(w.shape)}; 2:4 kernels need out x in features that are multiples of 32 x 64"
    if not bool(is_nm_sparse(w.detach(), 2, 4)):
        return "its weight is not 2:4 sparse along the inputs; apply Plan.uniform(0.5, granularity='2:4') first"
    return ""


register_backend(
    Backend("dense", "masks folded into a dense copy (the baseline, always valid)", "model", ("cpu", "cuda"))
)
register_backend(
    Backend(
        "shrink",
        "fully pruned coupled channels (filters, neurons) physically removed with Torch-Pruning",
        "model",
        ("cpu", "cuda"),
        "example inputs to trace the model, and whole filters/neurons pruned (granularity 'filter'/'neuron')",
        build=lambda state: _shrink_build(state),
        families=("structured",),
    )
)
register_backend(
    Backend(
        "csr",
        "Linear (and Conv2d, via unfold) layers as CSR weights, y = torch.sparse.mm(W, x.T).T + b (pays off at "
        "high sparsity; for convs only on wide layers near 99%)",
        "layer",
        ("cpu", "cuda"),
        "Linear or Conv2d (groups=1) layers",
        _check_csr,
        _convert_csr,
        families=("unstructured", "N:M", "block"),
    )
)
register_backend(
    Backend(
        "bsr",
        "Linear layers as block-sparse (BSR) weights on CUDA",
        "layer",
        ("cuda",),
        "a CUDA device and Linear weights with whole zero blocks (granularity 'block16x16' / 'block32x32')",
        _check_bsr,
        _convert_bsr,
        families=("block",),
    )
)
register_backend(
    Backend(
        "semi_structured",
        "2:4 Linear weights on NVIDIA sparse tensor cores (torch.sparse.to_sparse_semi_structured)",
        "layer",
        ("cuda",),
        SEMI_STRUCTURED_NEEDS,
        _check_semi,
        SemiStructuredLinear.from_linear,  # type: ignore[arg-type]
        families=("N:M",),
        dtype=torch.float16,
    )
)
