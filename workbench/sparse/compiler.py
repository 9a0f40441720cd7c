"""`compile`: a new, faster module from a masked one — the live model is never touched.

>>> import torch, workbench as wb
>>> torch.manual_seed(0) and None
>>> model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))
>>> bench = wb.Workbench(model, [(torch.randn(16, 32), torch.randint(0, 4, (16,)))])
>>> _ = bench.apply(wb.Plan.uniform(0.5, granularity="neuron"), evaluate=False)
>>> result = wb.sparse.compile(bench, backend="shrink")
>>> result.module[0].out_features, result.report.params_before, result.report.params_after
(32, 2372, 1188)
>>> fast, rep = result  # it unpacks as (module, report)
>>> rep.max_abs_err < 1e-5
True

What each backend does is in `workbench.sparse.backends`. ``auto`` measures, on `device` and at
`batch_size`, first the whole model dense vs shrunk, then every Linear layer dense vs each layer backend
valid there (median of interleaved repeats, `workbench.sparse.timing`), and keeps a candidate only if its
outputs match the masked model (``atol = rtol = 1e-5`` in fp32; ``1e-2`` in fp16/bf16, whose kernels sum in
another order) and it is faster by at least `min_gain`; a final whole-model timing keeps the compiled
model only if it is not slower than the dense copy. So ``auto`` is never slower than dense, as measured.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ..evaluate import model_device
from ._inputs import _as_inputs, _batch, _capture, _cast, _close, _map, _out  # noqa: F401  (their old home)
from ._ties import (  # noqa: F401  (their old home)
    _aliases,
    _by_every_name,
    _check_ties,
    _masks_by_every_name,
    _tied_names,
    _untied_groups,
)
from .backends import CompileError, available_backends, get_backend
from .report import CompileReport, CompileResult, LayerResult, stored_weights
from .stages import CompileState, _as_dense, _choose, _replace, _source, finish, layer_stage, model_stage, prepare  # noqa: F401

__all__ = ["CompileReport", "CompileResult", "LayerResult", "compile", "stored_weights"]


def compile(
    bench_or_model: Any,
    backend: str = "auto",
    device: str | torch.device | None = None,
    batch_size: int = 64,
    example_inputs: Tensor | Sequence[Tensor] | None = None,
    *,
    dtype: torch.dtype | None = None,
    repeats: int = 7,
    min_gain: float = 0.05,
    atol: float | None = None,
    rtol: float | None = None,
) -> CompileResult:
    """Build a new module computing what the masked model computes, faster where a backend measures faster.

    `bench_or_model`: a `Workbench` (its masks, coupled groups, example inputs and data are used) or a plain
    module (zeros count as pruned; pass `example_inputs`). `backend`: ``"auto"`` or a name of
    `available_backends()`. `device`/`dtype`: where and in which precision the compiled copy runs (default:
    the model's). `batch_size`: the rows per forward pass that latencies are measured at. Returns a
    `CompileResult`: ``.module`` (the new module) and ``.report`` (a `CompileReport`); it unpacks like the pair
    ``(module, report)``. The new module is in eval mode and carries what `export` needs (`module._workbench`:
    plans applied, example inputs, source class).
    """
    model, groups, masks, example, data, plans = _source(bench_or_model, example_inputs)
    adapter = getattr(bench_or_model, "adapter", None)
    names = ["auto", *available_backends()]
    if backend not in names:
        get_backend(backend)  # raises with suggestions
    dev = torch.device(device) if device is not None else model_device(model)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CompileError("device='cuda' was asked for, but torch sees no CUDA device here")
    b = None if backend == "auto" else get_backend(backend)
    if b is not None and dev.type not in b.devices:
        raise CompileError(
            f"backend {backend!r} needs {b.requires}; this compile runs on {dev.type}. Use 'auto' or 'csr' there."
        )
    if not isinstance(batch_size, int) or batch_size < 1:
        raise CompileError(f"batch_size must be a positive int, got {batch_size!r}")
    low = dtype in (torch.float16, torch.bfloat16) or (
        dtype is None and any(p.dtype in (torch.float16, torch.bfloat16) for p in model.parameters())
    )
    atol = atol if atol is not None else (1e-2 if low else 1e-5)
    rtol = rtol if rtol is not None else (1e-2 if low else 1e-5)
    st = CompileState(model, groups, masks, backend, b, dev, dtype, batch_size, repeats, min_gain, atol, rtol)
    prepare(st, example, data, adapter)  # the reference copy, its inputs and outputs
    model_stage(st)  # model level: dense copy, or rewritten by a model-level backend (shrink)
    layer_stage(st)  # layer level: single layers replaced by a layer backend
    finish(st)  # whole model: check, time, and (auto) never slower than dense
    stage, xs = st.stage, st.xs
    _check_ties(st.ref, stage)
    stage.eval()
    stage._workbench = {  # what export needs; a plain attribute, not in the state_dict
        "plans": plans,
        "example_inputs": None if xs is None else _map(xs, lambda v: v[:2].detach().cpu() if v.dim() else v.cpu()),
        "source": {"module": type(model).__module__, "qualname": type(model).__qualname__},
        "backend": backend,
    }
    report = CompileReport(
        backend=backend,
        device=str(dev),
        dtype=str(next((p.dtype for p in stage.parameters()), dtype or torch.float32)).replace("torch.", ""),
        batch_size=batch_size if xs is not None else None,
        layers=tuple(st.layers),
        params_before=st.params_before,
        params_after=stored_weights(stage),
        removed_channels=st.removed,
        dense_ms=st.dense_ms,
        compiled_ms=st.compiled_ms,
        max_abs_err=st.err,
        notes=tuple(st.notes),
    )
    return CompileResult(module=stage, report=report)
