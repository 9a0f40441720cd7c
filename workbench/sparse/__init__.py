"""Sparse core: turn a masked model into a genuinely smaller or faster one, and export it.

- `compile(bench_or_model, backend="auto", ...)` -> `CompileResult` (``.module``, ``.report``; it unpacks as
  ``fast, report = compile(...)``); backends in a registry
  (`available_backends()`): ``dense``, ``shrink``, ``csr``, ``bsr`` (CUDA), ``semi_structured`` (CUDA 2:4);
- `export(module, "out/", formats=("safetensors", "onnx", "plan"))` and `load(path, model)`.

The live model is never modified: everything works on copies.
"""

from .backends import Backend, CompileError, available_backends, get_backend, register_backend
from .compiler import CompileReport, CompileResult, LayerResult, compile, stored_weights
from .export import FORMATS, ExportError, ExportReport, export, load
from .modules import BSRLinear, SemiStructuredLinear, SparseLinear, densify_
from .shrink import prunable_channels, shrink_

__all__ = [
    "FORMATS",
    "BSRLinear",
    "Backend",
    "CompileError",
    "CompileReport",
    "CompileResult",
    "ExportError",
    "ExportReport",
    "LayerResult",
    "SemiStructuredLinear",
    "SparseLinear",
    "available_backends",
    "compile",
    "densify_",
    "export",
    "get_backend",
    "load",
    "prunable_channels",
    "register_backend",
    "shrink_",
    "stored_weights",
]
