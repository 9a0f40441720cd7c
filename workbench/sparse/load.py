"""Load an export back (`load`): every file checked against the manifest and for its form, the original
architecture freshly built (or the recorded class, allow-listed), resized to the saved shapes, the weights loaded,
tied tensors tied again, and the saved example outputs reproduced. What is written is in `workbench.sparse.export`.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ExportError, WorkbenchWarning
from . import reader
from .manifest import MANIFEST, verify_manifest
from .modules import SemiStructuredLinear, SparseConv2d, _SparseBase

__all__ = ["load"]


def _sparse_classes() -> dict[str, type[nn.Module]]:
    """Every sparse layer class by name (the subclasses of `_SparseBase`, found, not listed by hand): a layer a
    backend's `convert` builds is loadable once its class is defined."""
    out: dict[str, type[nn.Module]] = {}
    todo = list(_SparseBase.__subclasses__())
    while todo:
        cls = todo.pop(0)
        out.setdefault(cls.__name__, cls)
        todo += cls.__subclasses__()
    return out


_SPARSE = _sparse_classes()


def _prediction(y: Any) -> Tensor | None:
    """The output tensor an export records and `load` compares: a tensor, or the predictions of a ModelOutput."""
    if isinstance(y, Tensor):
        return y
    from ..adapter import logits_of

    try:
        return logits_of(y)
    except Exception:
        return None


def _build(
    arch: dict[str, Any], model: nn.Module | Callable[[], nn.Module] | None, arch_path: Path, trust_code: bool
) -> nn.Module:
    """The model to load into: the caller's module or factory, else the recorded class (allow-listed, see
    `workbench.sparse.reader.model_class`) called without arguments."""
    if isinstance(model, nn.Module):
        return model
    if model is not None and not callable(model):
        raise ExportError(
            f"model must be an nn.Module (the architecture freshly built) or a no-argument callable returning one, "
            f"got {type(model).__name__}"
        )
    factory, what = (model, "model()") if model is not None else (reader.model_class(arch, arch_path, trust_code), "")
    if not what:
        src = arch["source"]
        what = f"{src['module']}.{src['qualname']}() (named in {arch_path})"
    try:
        built = factory()
    except Exception as e:
        raise ExportError(
            f"{what} failed without arguments ({type(e).__name__}: {e}); pass the architecture freshly built: "
            "load(path, model=MyNet(...))"
        ) from None
    if not isinstance(built, nn.Module):
        raise ExportError(f"{what} must return an nn.Module, got {type(built).__name__}")
    return built


def _resize(model: nn.Module, name: str, spec: dict[str, Any], arch_path: Path) -> None:
    try:
        m = model.get_submodule(name)
    except AttributeError:
        raise ExportError(f"the saved model has a module {name!r} that the given architecture lacks") from None
    try:
        _resize_module(model, m, name, spec)
    except ExportError:
        raise
    except (KeyError, AttributeError, TypeError, ValueError, IndexError, ArithmeticError, RuntimeError) as e:
        raise ExportError(
            f"{arch_path}: module {name!r} ({spec['type']}) cannot be rebuilt from its saved description into "
            f"the given {type(m).__name__} ({type(e).__name__}: {e}); was `model` built with the same constructor "
            "arguments as the exported one, or was the file edited?"
        ) from None


def _resize_module(model: nn.Module, m: nn.Module, name: str, spec: dict[str, Any]) -> None:
    cls = _sparse_classes().get(spec["type"])
    if cls is not None and not isinstance(m, cls):
        t = spec["tensors"]
        empty = {k: torch.empty(v["shape"], dtype=getattr(torch, v["dtype"])) for k, v in t.items()}
        a = spec["attrs"]
        shape = (a["out_features"], a["in_features"])
        bias = empty.get("bias")
        if cls is SemiStructuredLinear:
            new: nn.Module = SemiStructuredLinear(empty["weight"], bias)
        elif cls is SparseConv2d:  # the fresh model's Conv2d has the kernel, strides and paddings
            new = SparseConv2d(
                empty["crow_indices"],
                empty["col_indices"],
                empty["values"],
                (a["out_channels"], a["in_channels"], *m.kernel_size),
                bias,
                m.stride,
                m.padding,
                m.dilation,
            )
        else:
            new = cls(empty["crow_indices"], empty["col_indices"], empty["values"], shape, bias)
        parent, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, leaf, new)
        return
    if spec["type"] == "SlimRNN" and isinstance(m, nn.RNNBase):
        from .rnn import SlimRNN

        t = spec["tensors"]
        kept = [list(range(t[f"kept_{i}"]["shape"][0])) for i in range(sum(k.startswith("kept_") for k in t))]
        new_rnn = SlimRNN.shaped_like(m, kept)
        parent, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, leaf, new_rnn)  # the saved kept_i buffers load
        return
    if spec["type"] == "SlimMultiheadAttention" and isinstance(m, nn.MultiheadAttention):
        from .heads import SlimMultiheadAttention

        t = spec["tensors"]
        heads = t["kept_heads"]["shape"][0]
        new = SlimMultiheadAttention(
            m.embed_dim,
            heads,
            t["in_proj_weight"]["shape"][0] // (3 * heads),
            list(range(heads)),  # the saved kept_heads buffer replaces these
            m.num_heads,
            bias="in_proj_bias" in t,
            batch_first=m.batch_first,
            dropout=m.dropout,
        )
        parent, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, leaf, new)
        return
    if spec["type"] == "ZeroPaddedLayerNorm" and type(m) is nn.LayerNorm:  # a hidden-size cut (sparse/norms.py)
        from .norms import ZeroPaddedLayerNorm

        m.__class__ = ZeroPaddedLayerNorm
    if type(m).__name__ != spec["type"]:
        raise ExportError(f"module {name!r} is a {type(m).__name__} here but a {spec['type']} in the saved model")
    for a, v in spec["attrs"].items():
        setattr(m, a, tuple(v) if isinstance(v, list) else v)
    for local, t in spec["tensors"].items():
        cur = getattr(m, local, None)
        shape, dtype = torch.Size(t["shape"]), getattr(torch, t["dtype"])
        if isinstance(cur, Tensor) and cur.shape == shape and cur.dtype == dtype:
            continue
        empty = torch.empty(shape, dtype=dtype)
        if t["kind"] == "parameter":
            setattr(m, local, nn.Parameter(empty, requires_grad=bool(getattr(cur, "requires_grad", True))))
        else:
            m.register_buffer(local, empty)


def _tie_(model: nn.Module, tied: dict[str, str]) -> None:
    """Make every tensor the export saved once (`tied`: name -> the name it shares) one tensor again, also when
    the given architecture does not tie them itself."""
    for alias, first in tied.items():
        parent, _, local = alias.rpartition(".")
        fparent, _, flocal = first.rpartition(".")
        try:
            owner, src_owner = model.get_submodule(parent), model.get_submodule(fparent)
        except AttributeError:
            continue  # load_state_dict names what is missing
        for table in ("_parameters", "_buffers"):
            src, cur = getattr(src_owner, table).get(flocal), getattr(owner, table).get(local)
            if src is None or cur is None or cur is src:
                continue
            if cur.shape != src.shape:
                raise ExportError(
                    f"{alias!r} {list(cur.shape)} was saved as one tensor with {first!r} {list(src.shape)}; "
                    "was `model` built with the same constructor arguments as the exported one?"
                )
            getattr(owner, table)[local] = src


def _folder(path: str | os.PathLike) -> tuple[Path, dict[str, Any] | None]:
    """The export folder and its verified manifest (None for exports made before manifests)."""
    p = Path(path)
    if not p.exists():
        raise ExportError(f"{p} does not exist; pass the folder that wb.sparse.export wrote")
    if not p.is_dir():
        raise ExportError(f"{p} is a file; pass the folder that wb.sparse.export wrote (here {p.parent})")
    if not any(p.iterdir()):
        raise ExportError(f"{p} is empty: no export was written there (wb.sparse.export(module, {str(p)!r}))")
    files = verify_manifest(p)
    need = ("architecture.json", "model.safetensors")
    if files is not None:
        lacking = [n for n in need if n not in files]
        if lacking:
            raise ExportError(
                f"{p} has no {' + '.join(lacking)} in its {MANIFEST}; export with formats including 'safetensors'"
            )
    elif not all((p / n).is_file() for n in need):
        raise ExportError(
            f"{p} has no architecture.json + model.safetensors; export with formats including 'safetensors'"
        )
    else:
        warnings.warn(
            f"{p} has no {MANIFEST} (exported by an earlier version of the workbench): its files cannot be checked "
            "for changes or truncation, only for their form. Export the model again to add one",
            WorkbenchWarning,
            stacklevel=3,
        )
    return p, files


def load(
    path: str | os.PathLike,
    model: nn.Module | Callable[[], nn.Module] | None = None,
    *,
    check: bool = True,
    atol: float = 1e-5,
    trust_code: bool = False,
) -> nn.Module:
    """Rebuild an exported module: `model` (the original architecture freshly built, or a no-argument callable
    returning it) is resized to the saved shapes and the safetensors weights are loaded (no pickles). With `check`,
    the saved example outputs are reproduced.

    Without `model`, the class recorded in ``architecture.json`` is built without arguments, but only if it is
    one of the workbench's own (``workbench.*``) or a ``torch.nn`` layer; any other name raises `ExportError`
    before anything is imported. ``trust_code=True`` lifts that: `load` then imports the recorded module and
    calls the recorded name, so use it only for files from someone you trust.

    Every file is checked against the sha256 ``manifest.json`` that `export` writes, then for its form; a missing,
    changed, truncated or malformed file raises `ExportError` naming it. Exports without a manifest (made before
    there was one) still load, with a `WorkbenchWarning` that their files could not be checked for changes.
    """
    p, files = _folder(path)
    arch_path, st_path = p / "architecture.json", p / "model.safetensors"
    listed = (lambda n: n in files) if files is not None else (lambda n: (p / n).is_file())
    arch = reader.read_architecture(arch_path)
    state = reader.read_tensors(st_path)
    reader.check_tensors(arch, state, arch_path, st_path)
    if listed("plan.json"):
        reader.read_plans(p / "plan.json")  # a plan file that holds no plans is a broken export
    example = reader.read_examples(p / "example.safetensors") if check and listed("example.safetensors") else None
    m = _build(arch, model, arch_path, trust_code)
    if arch["removed_branches"]:  # residual branches the shrink cut out of the graph: cut them again
        from ..branches import find_branches, remove_branches

        found = {b.id: b for b in find_branches(m)[0]}
        lost = [i for i in arch["removed_branches"] if i not in found]
        if lost:
            raise ExportError(
                f"the saved model had residual branches {lost} removed, but the model to load into has none"
            )
        m = remove_branches(m, [found[i] for i in arch["removed_branches"]])
    for name, spec in arch["modules"].items():
        _resize(m, name, spec, arch_path)
    _tie_(m, arch["tied"])
    for k, first in arch["tied"].items():
        state[k] = state[first]
    own = m.state_dict()
    wrong = [(k, v.shape, own[k].shape) for k, v in state.items() if k in own and own[k].shape != v.shape]
    if wrong:
        k, saved, here = wrong[0]
        raise ExportError(
            f"{st_path}: {k!r} is {list(saved)} but the model to load into has {list(here)} there "
            f"({len(wrong)} such tensors); was `model` built with the same constructor arguments as the exported one?"
        )
    missing, unexpected = m.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ExportError(
            f"saved weights do not fit the architecture: missing {missing[:5]}, unexpected {unexpected[:5]}; "
            "was `model` built with the same constructor arguments as the exported one?"
        )
    m.eval()
    if example is not None:
        xs, kw, want = example
        try:
            with torch.inference_mode():
                y = _prediction(m(*xs, **kw))
        except Exception as e:
            raise ExportError(
                f"the loaded model fails on the inputs saved in {p / 'example.safetensors'} ({type(e).__name__}: "
                f"{str(e)[:200]}); load with check=False to skip the check"
            ) from None
        err = math.inf
        if isinstance(y, Tensor) and y.shape == want.shape:
            err = float((y.float() - want.float()).abs().max()) if y.numel() else 0.0
        if not err <= atol:
            raise ExportError(
                f"the loaded model does not reproduce the saved example outputs (max abs error {err:.2e})"
            )
    return m
