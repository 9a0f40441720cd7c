"""Reading an export folder back without trusting it: every file is checked for its form before it is used, and
the class named in ``architecture.json`` is imported only from an allow-list.

Each malformed input is an `ExportError` naming the file and what is wrong with it (not JSON, a missing key, a
value of the wrong type, a tensor whose shape or dtype differs from the architecture, a plan file that holds no
plans). The class to build the model from is looked up only in the workbench's own modules (``workbench.*``) and
in ``torch.nn``; any other name is refused before anything is imported, unless the caller opts in with
``trust_code=True``.

>>> allowed("torch.nn.modules.container"), allowed("workbench.demo.models"), allowed("os"), allowed("workbench._cli")
(True, True, False, False)
"""

from __future__ import annotations

import importlib
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ExportError, PlanError
from ..plan import Plan

__all__ = [
    "ARCH_FORMAT",
    "ARCH_VERSION",
    "FLOAT_ATTRS",
    "SIZE_ATTRS",
    "allowed",
    "check_tensors",
    "model_class",
    "read_architecture",
    "read_examples",
    "read_json",
    "read_plans",
    "read_tensors",
]

ARCH_FORMAT = "workbench-architecture"
ARCH_VERSION = 1
SIZE_ATTRS = (
    "in_features",
    "out_features",
    "in_channels",
    "out_channels",
    "groups",
    "num_features",
    "normalized_shape",
    "num_groups",
    "num_channels",
    "num_embeddings",
    "embedding_dim",
    "num_parameters",
    "nf",  # Hugging Face Conv1D
    "nx",
    # attention modules' head counts and widths, as `shrink_rule_groups_` leaves them
    "num_heads",
    "num_attention_heads",
    "n_head",
    "n_heads",
    "num_key_value_heads",
    "num_kv_heads",
    "n_kv_heads",
    "all_head_size",
    "inner_dim",
    "split_size",
    "full_size",  # ZeroPaddedLayerNorm: the width its statistics count (workbench.sparse.norms)
)
FLOAT_ATTRS = ("eps", "variance_epsilon")  # norms' epsilons: an RMS norm's grows when its hidden size is cut
ALLOWED_MODULES = ("workbench", "torch.nn")
_AGAIN = "the file is corrupted or comes from another program; export the model again"


def _bad(path: Path, where: str, want: str, got: Any) -> ExportError:
    shown = repr(got)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    return ExportError(f"{path}: {where} must be {want}, got {shown}; {_AGAIN}")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ExportError(f"{path} is not UTF-8 text (byte {e.start}): {_AGAIN}") from None
    except json.JSONDecodeError as e:
        raise ExportError(
            f"{path} is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}): it was changed or truncated; "
            "export the model again"
        ) from None


def _is_int(v: Any, low: int = 0) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def _dtype(name: Any) -> torch.dtype | None:
    got = getattr(torch, name, None) if isinstance(name, str) and name.isidentifier() else None
    return got if isinstance(got, torch.dtype) else None


def _dotted(name: Any) -> bool:
    return isinstance(name, str) and all(p.isidentifier() for p in name.split("."))


def _tensor_name(name: Any) -> bool:
    """A dotted name as `named_modules()` / `state_dict()` write them (parts may be digits: ``features.0.weight``)."""
    return isinstance(name, str) and all(p and p.strip() == p for p in name.split("."))


# what load needs to rebuild a module the exporter replaced (sparse layouts, slim RNNs and attention): tensors, attrs
_NEEDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "SparseLinear": (("crow_indices", "col_indices", "values"), ("out_features", "in_features")),
    "BSRLinear": (("crow_indices", "col_indices", "values"), ("out_features", "in_features")),
    "SemiStructuredLinear": (("weight",), ("out_features", "in_features")),
    "SparseConv2d": (("crow_indices", "col_indices", "values"), ("out_channels", "in_channels")),
    "SlimRNN": (("kept_0",), ()),
    "SlimMultiheadAttention": (("kept_heads",), ()),
}


def _check_module(path: Path, name: Any, spec: Any) -> None:
    at = f"modules[{name!r}]"
    if not isinstance(name, str) or (name and not _tensor_name(name)):
        raise _bad(path, "each module name", "a dotted name from named_modules()", name)
    if not isinstance(spec, dict):
        raise _bad(path, at, "an object with 'type', 'attrs' and 'tensors'", spec)
    if not isinstance(spec.get("type"), str) or not spec["type"].isidentifier():
        raise _bad(path, f"{at}.type", "a class name", spec.get("type"))
    attrs, tensors = spec.get("attrs"), spec.get("tensors")
    if not isinstance(attrs, dict):
        raise _bad(path, f"{at}.attrs", "an object", attrs)
    for a, v in attrs.items():
        if a in FLOAT_ATTRS:
            if not (isinstance(v, float) and math.isfinite(v) and v >= 0):
                raise _bad(path, f"{at}.attrs[{a!r}]", "a non-negative float", v)
            continue
        if a not in SIZE_ATTRS:
            raise _bad(path, f"{at}.attrs", f"size attributes among {', '.join(SIZE_ATTRS + FLOAT_ATTRS)}", a)
        if not (_is_int(v) or (isinstance(v, list) and all(_is_int(x) for x in v))):
            raise _bad(path, f"{at}.attrs[{a!r}]", "a non-negative int or a list of them", v)
    if not isinstance(tensors, dict):
        raise _bad(path, f"{at}.tensors", "an object", tensors)
    for local, t in tensors.items():
        where = f"{at}.tensors[{local!r}]"
        if not _tensor_name(local) or "." in local or local.startswith("__"):
            raise _bad(path, f"a tensor name of {at}", "an attribute name", local)
        if not isinstance(t, dict):
            raise _bad(path, where, "an object with 'shape', 'dtype' and 'kind'", t)
        if not isinstance(t.get("shape"), list) or not all(_is_int(x) for x in t["shape"]):
            raise _bad(path, f"{where}.shape", "a list of non-negative ints", t.get("shape"))
        if _dtype(t.get("dtype")) is None:
            raise _bad(path, f"{where}.dtype", "a torch dtype name such as 'float32'", t.get("dtype"))
        if t.get("kind") not in ("parameter", "buffer"):
            raise _bad(path, f"{where}.kind", "'parameter' or 'buffer'", t.get("kind"))
    need_t, need_a = _NEEDS.get(spec["type"], ((), ()))
    missing = [k for k in need_t if k not in tensors] + [k for k in need_a if k not in attrs]
    if missing:
        raise ExportError(
            f"{path}: module {name!r} ({spec['type']}) cannot be rebuilt from its saved description: it lacks "
            f"{', '.join(map(repr, missing))}; the file was edited or comes from another version: export the model "
            "again"
        )


def read_architecture(path: Path) -> dict[str, Any]:
    """``architecture.json``, checked for its form (not yet against the weights: see `check_tensors`)."""
    arch = read_json(path)
    if not isinstance(arch, dict) or arch.get("format") != ARCH_FORMAT or arch.get("version") != ARCH_VERSION:
        got = arch.get("format") if isinstance(arch, dict) else type(arch).__name__
        raise ExportError(
            f"{path} is not a workbench architecture file of version {ARCH_VERSION} (format {got!r}); "
            "export the model again with this version of the workbench"
        )
    mods = arch.get("modules")
    if not isinstance(mods, dict):
        raise _bad(path, "'modules'", "an object (module name -> description)", mods)
    for name, spec in mods.items():
        _check_module(path, name, spec)
    tied = arch.setdefault("tied", {})
    if not isinstance(tied, dict) or not all(_tensor_name(k) and _tensor_name(v) for k, v in tied.items()):
        raise _bad(path, "'tied'", "an object (tensor name -> name of the tensor it shares)", tied)
    removed = arch.setdefault("removed_branches", [])
    if not isinstance(removed, list) or not all(isinstance(b, str) for b in removed):
        raise _bad(path, "'removed_branches'", "a list of branch ids", removed)
    src = arch.get("source")
    if src is not None and not isinstance(src, dict):
        raise _bad(path, "'source'", "an object with 'module' and 'qualname'", src)
    return arch


def read_tensors(path: Path) -> dict[str, Tensor]:
    """A safetensors file's tensors; a truncated or corrupted file is an `ExportError` naming it."""
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as e:  # SafetensorError, or an OSError from mmap on a file shorter than its header says
        raise ExportError(
            f"{path} is not a readable safetensors file ({type(e).__name__}: {str(e)[:200]}): it was truncated or "
            "corrupted; export the model again"
        ) from None


def check_tensors(arch: dict[str, Any], state: dict[str, Tensor], arch_path: Path, st_path: Path) -> None:
    """The weights in `state` are the ones `arch` describes: same names, shapes and dtypes; tied names resolve."""
    for alias, first in arch["tied"].items():
        if first not in state:
            raise ExportError(
                f"{arch_path} ties {alias!r} to {first!r}, but {st_path} holds no tensor {first!r}; "
                "the two files come from different exports: export the model again"
            )
    for mod, spec in arch["modules"].items():
        for local, t in spec["tensors"].items():
            full = f"{mod}.{local}" if mod else local
            v = state.get(arch["tied"].get(full, full))
            if v is None:
                continue  # a non-persistent buffer: not in the state dict
            shape, dtype = tuple(t["shape"]), _dtype(t["dtype"])
            if tuple(v.shape) != shape or v.dtype != dtype:
                raise ExportError(
                    f"{arch_path} describes {full!r} as {t['dtype']} {list(shape)}, but {st_path} holds "
                    f"{str(v.dtype).replace('torch.', '')} {list(v.shape)}: the files come from different exports or "
                    "were edited; export the model again"
                )


def read_plans(path: Path) -> list[Plan]:
    doc = read_json(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("plans"), list):
        raise _bad(path, "the plan file", "an object {'plans': [plan, ...]} as export writes it", doc)
    plans = []
    for i, p in enumerate(doc["plans"]):
        try:
            plans.append(Plan.from_dict(p))
        except (PlanError, TypeError, ValueError, KeyError, AttributeError) as e:
            raise ExportError(f"{path}: plans[{i}] is not a workbench plan ({e}); {_AGAIN}") from None
    return plans


def read_examples(path: Path) -> tuple[list[Tensor], dict[str, Tensor], Tensor]:
    """The saved example: positional inputs ``input.0, input.1, ...``, keyword inputs ``kwarg.<name>`` and the
    ``output`` they gave."""
    ex = read_tensors(path)
    n = sum(k.startswith("input.") for k in ex)
    xs = [ex.get(f"input.{i}") for i in range(n)]
    kw = {k[len("kwarg.") :]: v for k, v in ex.items() if k.startswith("kwarg.")}
    if not (n or kw) or any(x is None for x in xs) or "output" not in ex:
        raise ExportError(
            f"{path} must hold 'input.0', 'input.1', ... (or 'kwarg.<name>') and 'output', got {sorted(ex)}; "
            f"{_AGAIN} (or load with check=False)"
        )
    return xs, kw, ex["output"]  # type: ignore[return-value]


def allowed(module: str) -> bool:
    """Whether `load` may import `module` without ``trust_code``: public modules of workbench or torch.nn."""
    parts = module.split(".")
    if not all(p.isidentifier() and not p.startswith("_") for p in parts):
        return False
    return any(parts[: len(a.split("."))] == a.split(".") for a in ALLOWED_MODULES)


def model_class(arch: dict[str, Any], arch_path: Path, trust_code: bool) -> Callable[[], Any]:
    """The no-argument callable ``architecture.json`` names to build the model: only a class of the allow-list
    (checked on the name, before any import), or anything when `trust_code`."""
    src = arch.get("source") or {}
    module, qualname = src.get("module"), src.get("qualname")
    folder = arch_path.parent
    if not (_dotted(module) and _dotted(qualname)):
        raise ExportError(
            f"{arch_path} names no class to build the model from (source {src!r}); pass the architecture "
            f"freshly built: load({str(folder)!r}, model=MyNet(...))"
        )
    name = f"{module}.{qualname}"
    public = allowed(module) and not any(p.startswith("_") for p in qualname.split("."))
    if not public and not trust_code:
        raise ExportError(
            f"{arch_path} names {name} (module {module!r}, qualname {qualname!r}) as the class to build the model "
            "from; load imports and calls only classes of workbench.* and torch.nn unless told to, so nothing "
            f"named in the files has run. Either pass the architecture: load({str(folder)!r}, model={qualname}(...)) "
            f"or a factory (model=make_model), or, if you trust whoever wrote these files, "
            f"load({str(folder)!r}, trust_code=True), which imports {module!r} and calls {qualname}()"
        )
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise ExportError(
            f"{arch_path} names {name}, which cannot be found here ({type(e).__name__}: {e}); pass the "
            f"architecture freshly built: load({str(folder)!r}, model=MyNet(...))"
        ) from None
    if not trust_code and not (isinstance(obj, type) and issubclass(obj, nn.Module)):
        raise ExportError(
            f"{arch_path} names {name}, which is not an nn.Module class; pass the architecture freshly built: "
            f"load({str(folder)!r}, model=MyNet(...))"
        )
    if not callable(obj):
        raise ExportError(f"{arch_path} names {name}, which is not callable; pass model=MyNet(...)")
    return obj
