"""Export a compiled (or any) module: safetensors + an architecture description, the plan, ONNX; and load back.

``export(module, "out/")`` writes, as asked by `formats`:

- ``model.safetensors``: the state dict (sparse layers as their CSR/BSR index arrays and values), plus
  ``architecture.json``: per module with tensors, its type, size attributes (``in_features``,
  ``out_channels``, ``num_features``, ...) and tensor shapes, so `load` can resize a freshly built copy of the
  original architecture to a shrunk model and load the weights — no pickled code anywhere, and
  ``example.safetensors`` (example inputs and outputs) so `load(..., check=True)` can verify the result;
- ``plan.json``: the plans that were applied (from a module made by `compile` on a Workbench, or `plan=`),
  to re-apply the masks on the original model (`workbench.Plan.from_dict`); an empty list for a module
  compiled from a dense Workbench;
- ``model.onnx``: the module with sparse layers made dense again (ONNX has no sparse kernels), exported by
  torch's `torch.export`-based exporter with a dynamic batch dimension, then run in onnxruntime on the
  example inputs and compared with torch (max abs error in the report). Operators without an ONNX
  translation (custom ops) are named in the error;
- ``manifest.json``, always, written last: the size and sha256 of every file above (`workbench.sparse.manifest`).

`ExportReport` lists the files with their sizes and their deflate-compressed sizes: unstructured-sparse
weights store their zeros, which compress away.

What `load` supports: modules built from standard layers whose size lives in the attributes above (Linear,
ConvNd, BatchNorm, LayerNorm, GroupNorm, Embedding, PReLU, and the workbench's sparse layers); pass the
original model freshly built (``load(path, MyNet())``) or a factory (``load(path, MyNet)``), or let `load`
build it from the recorded class when its constructor takes no arguments and it is one of the workbench's own
classes or a ``torch.nn`` layer (any other class only with ``trust_code=True``: `load` never imports or calls a
name read from the files otherwise). Before anything is built, every file is checked against the manifest and
for its form (`workbench.sparse.reader`): a missing, changed, truncated or malformed file is an `ExportError`
naming it. Tensors the model shares between modules (tied weights) are saved once and tied again.
Residual branches removed by the shrink (granularity ``layer``) are cut from the rebuilt model the same way
(torch.fx), and attention modules that lost heads are rebuilt as `SlimMultiheadAttention`, recurrent layers
that lost hidden units as `SlimRNN`. (`load` itself is in `workbench.sparse.load`, re-exported here.)
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
import warnings
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .._text import table_lines
from ..errors import ExportError
from ..plan import Plan
from .load import _SPARSE, _prediction, load  # noqa: F401  (load's old home)
from .manifest import MANIFEST, write_manifest
from .modules import _SparseBase, densify_
from .reader import ARCH_FORMAT, ARCH_VERSION, FLOAT_ATTRS, SIZE_ATTRS

__all__ = ["FORMATS", "ExportError", "ExportReport", "export", "load"]

FORMATS = ("safetensors", "onnx", "plan")


@dataclass(frozen=True)
class ExportReport:
    """Files written (name -> bytes), their deflate-compressed sizes, and the ONNX check against torch."""

    path: str
    formats: tuple[str, ...]
    files: dict[str, int]
    compressed: dict[str, int]
    onnx_max_abs_err: float | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> str:
        rows = [("file", "bytes", "deflate bytes", "ratio")]
        for k, v in self.files.items():
            c = self.compressed.get(k)
            rows.append((k, f"{v:,}", "-" if c is None else f"{c:,}", "-" if not c else f"{v / c:.2f}x"))
        lines = [f"export to {self.path}: {', '.join(self.formats)}", *table_lines(rows)]
        if self.onnx_max_abs_err is not None:
            lines.append(f"onnxruntime vs torch: max abs error {self.onnx_max_abs_err:.1e}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


# ------------------------------------------------------------------------------------------------------------
def _deflated(path: Path) -> int:
    c = zlib.compressobj(6)
    n = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            n += len(c.compress(chunk))
    return n + len(c.flush())


def _jsonable(v: Any) -> Any:
    if isinstance(v, (tuple, list)):
        return [_jsonable(x) for x in v]
    return v


def architecture(module: nn.Module) -> dict[str, Any]:
    """Per module with tensors of its own: type, size attributes and tensor shapes/dtypes (plain JSON data)."""
    mods: dict[str, Any] = {}
    for name, m in module.named_modules():
        tensors = {}
        for local, t in list(m.named_parameters(recurse=False)) + list(m.named_buffers(recurse=False)):
            if t is None:
                continue
            kind = "parameter" if isinstance(t, nn.Parameter) else "buffer"
            tensors[local] = {"shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", ""), "kind": kind}
        attrs = {}
        for a in SIZE_ATTRS:
            v = getattr(m, a, None)
            if (isinstance(v, int) and not isinstance(v, bool)) or (
                isinstance(v, tuple) and all(isinstance(x, int) for x in v)
            ):
                attrs[a] = _jsonable(v)
        for a in FLOAT_ATTRS:
            v = getattr(m, a, None)
            if isinstance(v, float) and tensors:
                attrs[a] = v
        if not tensors and not isinstance(m, _SparseBase) and not attrs:
            continue  # (a module without tensors is kept for its sizes: an attention module's head counts)
        mods[name] = {"type": type(m).__name__, "attrs": attrs, "tensors": tensors}
    return mods


def _state(module: nn.Module) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Contiguous CPU tensors for safetensors; tensors sharing storage are saved once (`tied`: name -> first)."""
    out: dict[str, Tensor] = {}
    seen: dict[tuple, str] = {}
    tied: dict[str, str] = {}
    for k, v in module.state_dict(keep_vars=False).items():
        if v is None:
            continue
        key = (v.data_ptr(), v.dtype, tuple(v.shape), tuple(v.stride()), v.device)
        if v.numel() and key in seen:
            tied[k] = seen[key]
            continue
        seen[key] = k
        out[k] = v.detach().to("cpu").contiguous().clone()
    return out, tied


def _examples(module: nn.Module, example_inputs: Any) -> tuple[Tensor, ...] | dict[str, Tensor] | None:
    """Example inputs: a tuple of positional tensors, or a dict of keyword tensors (Hugging Face batches; values
    that are not tensors, such as ``use_cache=False``, are left out)."""
    ex = example_inputs if example_inputs is not None else getattr(module, "_workbench", {}).get("example_inputs")
    if ex is None:
        return None
    if isinstance(ex, Tensor):
        return (ex,)
    if isinstance(ex, (list, tuple)) and all(isinstance(v, Tensor) for v in ex):
        return tuple(ex)
    if isinstance(ex, Mapping) and any(isinstance(v, Tensor) for v in ex.values()):
        return {k: v for k, v in ex.items() if isinstance(v, Tensor)}
    raise ExportError(
        f"example_inputs must be a tensor, a tuple of tensors or a dict of keyword tensors, got {type(ex).__name__}"
    )


def _run(module: nn.Module, xs: tuple[Tensor, ...] | dict[str, Tensor]) -> Any:
    return module(**xs) if isinstance(xs, dict) else module(*xs)


def _plans(module: nn.Module, plan: Any) -> list[dict[str, Any]]:
    if plan is None:
        return list(getattr(module, "_workbench", {}).get("plans") or [])
    items = plan if isinstance(plan, (list, tuple)) else [plan]
    out = []
    for p in items:
        if isinstance(p, Plan):
            out.append(p.to_dict())
        elif isinstance(p, dict):
            out.append(Plan.from_dict(p).to_dict())
        else:
            raise ExportError(f"plan must be a workbench Plan, a plan dict or a list of them, got {type(p).__name__}")
    return out


def _custom_ops(ep) -> list[str]:
    ops = set()
    for node in ep.graph.nodes:
        t = node.target
        ns = getattr(t, "namespace", None)
        if node.op == "call_function" and ns is not None and ns not in ("aten", "prims", "prim"):
            ops.add(f"{ns}::{getattr(t, '_opname', getattr(t, '__name__', str(t)))}")
    return sorted(ops)


@contextlib.contextmanager
def _quiet():
    log = logging.getLogger("torch.onnx")
    level = log.level
    log.setLevel(logging.ERROR)
    buf = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(buf):
            warnings.simplefilter("ignore")
            yield
    finally:
        log.setLevel(level)


class _Keywords(nn.Module):
    """A model called with keyword inputs (a Hugging Face batch), called positionally in the order of `names` and
    returning its predictions (``logits``; no caches), as ONNX graphs take and give plain tensors."""

    def __init__(self, model: nn.Module, names: Sequence[str], extra: dict[str, Any]):
        super().__init__()
        self.model, self.names, self.extra = model, tuple(names), dict(extra)

    def forward(self, *args: Tensor) -> Tensor:
        from ..adapter import logits_of

        return logits_of(self.model(**dict(zip(self.names, args)), **self.extra))


def _onnx(
    module: nn.Module, xs: tuple[Tensor, ...] | dict[str, Tensor], path: Path, atol: float, rtol: float
) -> tuple[float, list[str]]:
    notes: list[str] = []
    names: list[str] | None = None
    if isinstance(xs, dict):  # keyword inputs: the graph's inputs are named after them, its output is the logits
        import inspect

        names = list(xs)
        takes = inspect.signature(module.forward).parameters
        module = _Keywords(module, names, {"use_cache": False} if "use_cache" in takes else {})
        xs = tuple(xs[k] for k in names)
        notes.append(f"model.onnx takes {', '.join(names)} (in this order) and returns the logits")
    try:
        import onnxruntime as ort
    except ImportError:
        raise ExportError(
            "ONNX export needs onnx, onnxscript and onnxruntime: pip install 'workbench[export]'"
        ) from None
    dense = densify_(copy.deepcopy(module)).to("cpu").float().eval()
    xs = tuple(v.to("cpu").float() if v.is_floating_point() else v.to("cpu") for v in xs)
    if xs[0].shape[0] < 2:
        xs = tuple(torch.cat([v, v]) for v in xs)
    batch = torch.export.Dim("batch")
    with _quiet():
        try:
            ep = torch.export.export(dense, xs, dynamic_shapes=tuple({0: batch} for _ in xs), strict=False)
        except Exception:
            notes.append("the batch dimension could not be made dynamic: the ONNX model has a fixed batch size")
            try:
                ep = torch.export.export(dense, xs, strict=False)
            except Exception as e:
                raise ExportError(
                    f"torch.export could not capture the model for ONNX ({type(e).__name__}: {str(e)[:400]}); "
                    "models with data-dependent control flow need torch.cond or a fixed path"
                ) from e
        custom = _custom_ops(ep)
        try:
            prog = torch.onnx.export(ep, xs, dynamo=True, verbose=False, external_data=False, input_names=names)
            prog.save(str(path))
        except Exception as e:
            if custom:
                raise ExportError(
                    f"ONNX export failed: the model calls custom operators with no ONNX translation: {', '.join(custom)}. "
                    "Register one with torch.onnx.export(..., custom_translation_table=...), or replace those ops "
                    "before exporting (formats without 'onnx' still work)."
                ) from e
            raise ExportError(f"ONNX export failed ({type(e).__name__}: {str(e)[:400]})") from e
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {i.name: v.numpy() for i, v in zip(sess.get_inputs(), xs)}
    got = torch.from_numpy(sess.run(None, feeds)[0])
    with torch.inference_mode():
        want = dense(*xs)
    want = want[0] if isinstance(want, (tuple, list)) else want
    want = want if isinstance(want, Tensor) else _prediction(want)
    err = float((got - want).abs().max())
    if not torch.allclose(got, want, atol=atol, rtol=rtol):
        raise ExportError(
            f"onnxruntime's outputs differ from torch's by {err:.2e} (atol {atol:g}); the ONNX file is at {path}"
        )
    return err, notes


def export(
    module: nn.Module,
    path: str | os.PathLike,
    formats: Iterable[str] = FORMATS,
    example_inputs: Tensor | Sequence[Tensor] | None = None,
    plan: Plan | dict | Sequence[Plan | dict] | None = None,
    *,
    atol: float = 1e-5,
    rtol: float = 1e-5,
) -> ExportReport:
    """Write `module` to the folder `path` in `formats` (see the module docstring) and report sizes.

    >>> import tempfile, torch, workbench as wb
    >>> m = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    >>> with tempfile.TemporaryDirectory() as d:
    ...     rep = export(m, d, formats=("safetensors",))
    ...     sorted(rep.files), load(d, torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2)))[2].out_features
    (['architecture.json', 'manifest.json', 'model.safetensors'], 2)
    """
    if not isinstance(module, nn.Module):
        raise ExportError(
            f"export takes an nn.Module (e.g. the first result of wb.sparse.compile), got {type(module).__name__}"
        )
    formats = tuple(formats)
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ExportError(f"unknown export format(s) {bad or formats}; choose from {FORMATS}")
    out = Path(path)
    xs = _examples(module, example_inputs)
    plans = _plans(module, plan) if "plan" in formats else []
    compiled = isinstance(getattr(module, "_workbench", None), dict)
    if "plan" in formats and not plans and not compiled:
        raise ExportError(
            "no plan to write: pass plan=... (a Plan or a list of them), export a module made by wb.sparse.compile "
            "from a Workbench with pruning steps, or leave 'plan' out of formats"
        )
    if "onnx" in formats and xs is None:
        raise ExportError("ONNX export runs the model: pass example_inputs (a batch of model inputs)")
    out.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    notes: list[str] = []
    onnx_err = None
    if "safetensors" in formats:
        from safetensors.torch import save_file

        state, tied = _state(module)
        save_file(state, str(out / "model.safetensors"), metadata={"format": "pt", "producer": "workbench"})
        src = getattr(module, "_workbench", {}).get("source") or {
            "module": type(module).__module__,
            "qualname": type(module).__qualname__,
        }
        arch = {"format": ARCH_FORMAT, "version": ARCH_VERSION, "source": src, "tied": tied}
        arch["modules"] = architecture(module)
        arch["removed_branches"] = list(getattr(module, "_workbench_removed_branches", []))  # granularity 'layer'
        (out / "architecture.json").write_text(json.dumps(arch, indent=1))
        written += ["model.safetensors", "architecture.json"]
        if xs is not None:
            with torch.inference_mode():
                y = _prediction(_run(module, xs))
            if y is not None:
                if isinstance(xs, dict):
                    ex = {f"kwarg.{k}": v.detach().cpu().contiguous() for k, v in xs.items()}
                else:
                    ex = {f"input.{i}": v.detach().cpu().contiguous() for i, v in enumerate(xs)}
                ex["output"] = y.detach().cpu().contiguous()
                save_file(ex, str(out / "example.safetensors"))
                written.append("example.safetensors")
    if "plan" in formats:
        if not plans:
            notes.append("plan.json lists no plans: no pruning step was applied before compile")
        (out / "plan.json").write_text(json.dumps({"plans": plans}, indent=1))
        written.append("plan.json")
    if "onnx" in formats:
        onnx_err, more = _onnx(module, xs, out / "model.onnx", atol, rtol)  # type: ignore[arg-type]
        notes += more
        if any(isinstance(m, _SparseBase) for m in module.modules()):
            notes.append("ONNX has no sparse matmul kernels: sparse layers are stored dense in model.onnx")
        written.append("model.onnx")
    write_manifest(out, written)  # last: sha256 of every file above, checked by `load`
    written.append(MANIFEST)
    files = {k: (out / k).stat().st_size for k in written}
    big = {k for k in written if k.endswith((".safetensors", ".onnx"))}
    compressed = {k: _deflated(out / k) for k in written if k in big}
    return ExportReport(str(out), formats, files, compressed, onnx_err, tuple(notes))
