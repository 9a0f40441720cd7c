"""`compile`: a new, faster module from a masked one — the live model is never touched.

>>> import torch, workbench as wb
>>> torch.manual_seed(0) and None
>>> model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))
>>> bench = wb.Workbench(model, [(torch.randn(16, 32), torch.randint(0, 4, (16,)))])
>>> _ = bench.apply(wb.Plan.uniform(0.5, granularity="neuron"), evaluate=False)
>>> fast, rep = wb.sparse.compile(bench, backend="shrink")
>>> fast[0].out_features, rep.params_before, rep.params_after
(32, 2372, 1188)
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

import copy
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .._text import table_lines
from ..adapter import call, cat, logits_of, repeat, size, split
from ..branches import dead_branches, remove_branches
from ..evaluate import model_device
from ..groups import analyze_groups
from .backends import CompileError, available_backends, get_backend
from .modules import _SparseBase
from .shrink import prunable_channels, shrink_, shrink_heads_, shrink_rnn_units_, shrink_rule_groups_, traceable
from .timing import measure

__all__ = ["CompileReport", "LayerResult", "compile", "stored_weights"]


@dataclass(frozen=True)
class LayerResult:
    """One Linear layer of the compiled model. `tried`: median ms per call of each measured candidate on the
    layer's real input at the compile batch size (``"dense"`` included); `skipped`: why a backend was not
    used; `max_abs_err`: chosen vs the masked layer on that input."""

    name: str
    shape: tuple[int, ...]
    sparsity: float
    chosen: str
    tried: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    max_abs_err: float = 0.0

    @property
    def dense_ms(self) -> float | None:
        return self.tried.get("dense")

    @property
    def chosen_ms(self) -> float | None:
        return self.tried.get(self.chosen)

    @property
    def speedup(self) -> float | None:
        d, c = self.dense_ms, self.chosen_ms
        return None if d is None or c is None or c <= 0 else d / c


@dataclass(frozen=True)
class CompileReport:
    """What `compile` did, as plain data. Latencies are median ms per forward pass of the whole model at
    `batch_size` (None when not measured); `max_abs_err` compares the compiled model with the masked one."""

    backend: str
    device: str
    dtype: str
    batch_size: int | None
    layers: tuple[LayerResult, ...]
    params_before: int
    params_after: int
    removed_channels: dict[str, int]
    dense_ms: float | None
    compiled_ms: float | None
    max_abs_err: float
    notes: tuple[str, ...] = ()

    @property
    def speedup(self) -> float | None:
        if self.dense_ms is None or not self.compiled_ms:
            return None
        return self.dense_ms / self.compiled_ms

    @property
    def chosen(self) -> dict[str, str]:
        return {r.name: r.chosen for r in self.layers}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["layers"] = [asdict(r) for r in self.layers]
        d["speedup"] = self.speedup
        return d

    def table(self) -> str:
        def ms(v: float | None) -> str:
            return "-" if v is None else f"{v:.3f}"

        head = ("layer", "shape", "sparsity", "tried", "chosen", "dense ms", "chosen ms", "speedup", "max err")
        rows = [head]
        for r in self.layers:
            tried = ",".join(k for k in r.tried if k != "dense") or "-"
            sp = "-" if r.speedup is None else f"{r.speedup:.2f}x"
            rows.append(
                (
                    r.name,
                    "x".join(map(str, r.shape)),
                    f"{r.sparsity:.1%}",
                    tried,
                    r.chosen,
                    ms(r.dense_ms),
                    ms(r.chosen_ms),
                    sp,
                    f"{r.max_abs_err:.1e}",
                )
            )
        lines = table_lines(rows)
        sp = "-" if self.speedup is None else f"{self.speedup:.2f}x"
        top = (
            f"compile backend={self.backend} device={self.device} dtype={self.dtype} batch={self.batch_size}: "
            f"params {self.params_before:,} -> {self.params_after:,}; model dense {ms(self.dense_ms)} ms -> "
            f"{ms(self.compiled_ms)} ms ({sp}); max abs error {self.max_abs_err:.1e}"
        )
        if self.removed_channels:
            top += "\nshrink removed: " + ", ".join(f"{k}: {v}" for k, v in self.removed_channels.items())
        out = [top, *lines] if self.layers else [top]
        out += [f"note: {n}" for n in self.notes]
        return "\n".join(out)

    def __str__(self) -> str:
        return self.table()

    def __repr__(self) -> str:
        return f"CompileReport(\n{self.table()}\n)"


def stored_weights(module: nn.Module) -> int:
    """Numbers a module stores for its weights: parameters, plus the values of sparse layers."""
    n = sum(p.numel() for p in module.parameters())
    for m in module.modules():
        if isinstance(m, _SparseBase):
            v = getattr(m, "values", None)
            n += int(v.numel()) if v is not None else int(m.weight.numel()) // 2  # 2:4 keeps half
    return n


# ------------------------------------------------------------------------------------------------------------
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


def _aliases(model: nn.Module) -> dict[str, str]:
    """Every further name of a shared (tied) parameter -> the one name `named_parameters()` keeps for it.

    `named_parameters()` lists a tensor held by two modules once (``head.weight = emb.weight`` gives only
    ``emb.weight``), while `state_dict()`, the coupled groups and the mask store name it per module.
    """
    first: dict[int, str] = {}
    out: dict[str, str] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in first:
            out[name] = first[id(p)]
        else:
            first[id(p)] = name
    return out


def _tied_names(aliases: dict[str, str]) -> dict[str, list[str]]:
    """Every name of a tied parameter -> the other names of the same tensor."""
    sets: dict[str, list[str]] = {}
    for alias, canon in aliases.items():
        sets.setdefault(canon, [canon]).append(alias)
    return {n: [m for m in names if m != n] for names in sets.values() for n in names}


def _by_every_name(model: nn.Module) -> tuple[dict[str, Tensor], dict[str, list[str]]]:
    """Parameters under every name they are reachable by, and the tied ones' other names."""
    return dict(model.named_parameters(remove_duplicate=False)), _tied_names(_aliases(model))


def _masks_by_every_name(masks: dict[str, Tensor] | None, params: dict[str, Tensor], tied: dict[str, list[str]]):
    """The store's masks (keyed by the name it prunes a tied tensor as) under every name of that tensor."""
    if masks is None:
        return None
    out = {k: v for k, v in masks.items() if k in params}
    for name, others in tied.items():
        if name not in out:
            got = next((masks[o] for o in others if o in masks), None)
            if got is not None:
                out[name] = got
    return out


def _untied_groups(found: dict[str, list[int]], groups, tied: dict[str, list[str]], notes: list[str], what: str):
    """`found` without the groups that would cut a tied tensor: the cut copy would hold two tensors where the
    model holds one (Torch-Pruning and the slim modules replace each module's parameter on its own)."""
    keep = {}
    for gid, idx in found.items():
        hit = next((m.param for m in groups.groups[gid].members if m.param in tied), None)
        if hit is None:
            keep[gid] = idx
        else:
            notes.append(
                f"{what} of group {gid!r} not removed: they cut {hit!r}, which is tied to "
                f"{', '.join(map(repr, tied[hit]))}; the pruned {what} stay masked"
            )
    return keep


def _check_ties(ref: nn.Module, out: nn.Module) -> None:
    """Each tensor `ref` shares between modules is still one tensor in `out` wherever both names remain."""
    params = dict(out.named_parameters(remove_duplicate=False))
    for alias, canon in _aliases(ref).items():
        if alias in params and canon in params and params[alias] is not params[canon]:
            raise CompileError(
                f"the compiled copy holds {alias!r} and {canon!r} as two tensors, but the model ties them; "
                "this is a bug, please report it with the model"
            )


def _replace(root: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, new)


def _source(obj: Any, example: Any):
    """(model, groups, masks, example inputs, data, plans) of a Workbench or a plain module."""
    if isinstance(obj, nn.Module):
        return obj, None, None, example, None, []
    model = getattr(obj, "model", None)
    if not isinstance(model, nn.Module) or not hasattr(obj, "store"):
        raise CompileError(f"compile takes a Workbench or an nn.Module, got {type(obj).__name__}")
    plans = [e.plan for e in obj.history[1:] if e.active and e.plan is not None]
    ex = example if example is not None else obj.example_inputs
    return model, obj.groups, obj.store.masks(), ex, obj.data, plans


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
) -> tuple[nn.Module, CompileReport]:
    """Build a new module computing what the masked model computes, faster where a backend measures faster.

    `bench_or_model`: a `Workbench` (its masks, coupled groups, example inputs and data are used) or a plain
    module (zeros count as pruned; pass `example_inputs`). `backend`: ``"auto"`` or a name of
    `available_backends()`. `device`/`dtype`: where and in which precision the compiled copy runs (default:
    the model's). `batch_size`: the rows per forward pass that latencies are measured at. Returns
    ``(new_module, CompileReport)``; the new module is in eval mode and carries what `export` needs
    (`module._workbench`: plans applied, example inputs, source class).
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
    notes: list[str] = []

    ref = copy.deepcopy(model).to(device=dev, dtype=dtype).eval()
    xs = _batch(example, data, batch_size, adapter.split if adapter is not None else split)
    if xs is None and backend != "dense":
        raise CompileError(
            f"backend {backend!r} runs the model to trace or time it: pass example_inputs (a batch of model "
            "inputs), or compile a Workbench that has evaluation data"
        )
    xs = None if xs is None else _cast(xs, dev, dtype)
    with torch.inference_mode():
        y_ref = None if xs is None else _out(call(ref, xs))
    params_before = stored_weights(ref)

    # model level: dense copy, or shrunk ------------------------------------------------------------
    removed: dict[str, int] = {}
    stage = dense_copy = copy.deepcopy(ref)
    shrunk = None
    if backend in ("shrink", "auto"):
        if groups is None:
            with traceable(ref):
                groups = analyze_groups(ref, xs)  # read-only, and on our copy
        if groups.error:
            notes.append(f"shrink: {groups.error}")
        params, tied = _by_every_name(ref)  # tied tensors under every name: groups name them per module
        ref_masks = _masks_by_every_name(masks, params, tied)
        source = ref
        dead = dead_branches(ref, groups.branches.values(), ref_masks)
        if dead:  # whole residual branches (granularity 'layer'): cut them out of the graph first
            cut = remove_branches(ref, dead)
            with torch.inference_mode():
                ok, err = _close(_out(call(cut, xs)), y_ref, atol, rtol)  # type: ignore[arg-type]
            if ok:
                removed.update({f"branch {b.id}": sum(params[p].numel() for p in b.params) for b in dead})
                source = shrunk = cut
                params, tied = _by_every_name(cut)
                ref_masks = None if ref_masks is None else {k: v for k, v in ref_masks.items() if k in params}
                with traceable(cut):
                    groups = analyze_groups(cut, xs)
            else:
                notes.append(f"removing branches {[b.id for b in dead]} changes the outputs ({err:.2e}); kept")
        channels = _untied_groups(
            prunable_channels(groups, params, ref_masks, origin="trace"), groups, tied, notes, "channels"
        )
        if channels:
            shrunk = copy.deepcopy(source)
            shrink_(shrunk, xs, channels, groups)
            with torch.inference_mode():
                ok, err = _close(_out(call(shrunk, xs)), y_ref, atol, rtol)  # type: ignore[arg-type]
            if not ok:
                msg = (
                    f"shrinking groups {sorted(channels)} changes the outputs (max abs error {err:.2e}): a pruned channel "
                    "still feeds something the mask does not zero (e.g. a non-affine BatchNorm)"
                )
                if backend == "shrink":
                    raise CompileError(msg + "; compile with backend='dense' or 'csr' instead")
                notes.append(msg + "; shrink skipped")
                shrunk = None if source is ref else source  # the branches cut out stay cut
            else:
                removed.update({gid: len(idx) for gid, idx in channels.items()})
        rules = {
            **prunable_channels(groups, params, ref_masks, unit="channel", origin="rules"),
            **prunable_channels(groups, params, ref_masks, unit="head", origin="rules"),
            **prunable_channels(groups, params, ref_masks, unit="hidden", origin="rules"),
        }
        for found, slim_, tag, what in (
            (
                rules,
                shrink_rule_groups_,
                "rules",
                "attention heads, MLP neurons and hidden channels",
            ),  # sliced by their members
            (None, shrink_heads_, "heads", "heads"),  # SlimMultiheadAttention in place of nn.MultiheadAttention
            (None, shrink_rnn_units_, "units", "recurrent units"),  # SlimRNN in place of nn.LSTM/GRU/RNN
        ):
            if found is None:
                unit = "head" if tag == "heads" else "lstm-unit"
                found = prunable_channels(groups, params, ref_masks, unit=unit, origin="own")
            if tag != "rules":  # rule groups are sliced by their members, a tied tensor once for all its names
                found = _untied_groups(found, groups, tied, notes, what)
            if not found:
                continue
            slim = copy.deepcopy(shrunk if shrunk is not None else source)
            cut_out = slim_(slim, groups, found)
            with torch.inference_mode():
                ok, err = _close(_out(call(slim, xs)), y_ref, atol, rtol)  # type: ignore[arg-type]
            if cut_out and ok:
                shrunk = slim
                removed.update({f"{tag} {k}": v for k, v in cut_out.items()})
            elif cut_out:
                notes.append(f"removing {what} {cut_out} changes the outputs ({err:.2e}); {what} kept masked")
        if backend == "shrink" and not removed:
            notes.append(
                "nothing to shrink: no coupled channel is fully pruned (prune with granularity 'filter' or 'neuron'); "
                "the result is the dense copy"
            )
    if shrunk is not None and backend == "shrink":
        stage = shrunk
    elif shrunk is not None:  # auto: keep the shrunk model only if it is not slower
        with torch.inference_mode():
            t = measure(
                {"dense": lambda: call(ref, xs), "shrink": lambda: call(shrunk, xs)}, repeats=repeats, device=dev
            )
        if t["shrink"] <= t["dense"]:
            stage = shrunk
        else:
            notes.append(f"shrink measured slower than dense ({t['shrink']:.3f} vs {t['dense']:.3f} ms); not used")
            removed = {}
    base = stage

    # layer level --------------------------------------------------------------------------------------
    layers: list[LayerResult] = []
    if backend == "auto" or (b is not None and b.level == "layer"):
        cands = [get_backend(n) for n in available_backends() if get_backend(n).level == "layer"]
        cands = [c for c in cands if dev.type in c.devices] if backend == "auto" else [b]
        stage = copy.deepcopy(base) if backend == "auto" else base
        inputs = _capture(stage, xs)  # type: ignore[arg-type]
        tied = _tied_names(_aliases(stage))
        replaced = 0
        for name, mod in list(stage.named_modules()):
            if not isinstance(mod, (nn.Linear, nn.Conv2d)):
                continue
            shared = next(
                (f"{name}.{k}" for k, _ in mod.named_parameters(recurse=False) if f"{name}.{k}" in tied), None
            )
            if shared is not None:  # a sparse copy of one holder would leave two tensors where there is one
                why = f"{shared!r} is tied to {', '.join(map(repr, tied[shared]))}: converting it would untie them; kept dense"
                w = mod.weight.detach()
                layers.append(
                    LayerResult(
                        name, tuple(w.shape), float((w == 0).float().mean()), "dense", {}, {c.name: why for c in cands}
                    )
                )
                continue
            res, new = _choose(
                name, mod, inputs.get(name), cands, backend != "auto", dev, atol, rtol, repeats, min_gain
            )
            if new is not None:
                _replace(stage, name, new)
                try:  # a parent may read the layer's .weight itself (TransformerEncoderLayer's fast-path check)
                    with torch.inference_mode():
                        _out(call(stage, xs))  # type: ignore[misc]
                    replaced += 1
                except Exception as e:
                    _replace(stage, name, mod)
                    res = _as_dense(res, f"the model fails with it replaced ({type(e).__name__}: {e}); kept dense")
            layers.append(res)
        if b is not None and not replaced:
            why = (
                "; ".join(f"{r.name}: {r.skipped.get(backend, '?')}" for r in layers) or "the model has no Linear layer"
            )
            raise CompileError(f"backend {backend!r} could not take any layer ({why}). It needs {b.requires}.")
        if not replaced:
            stage = base

    # whole model: check, time, and (auto) never slower than dense ----------------------------------------
    dense_ms = compiled_ms = None
    err = 0.0
    if xs is not None:
        with torch.inference_mode():
            ok, err = _close(_out(call(stage, xs)), y_ref, atol, rtol)  # type: ignore[arg-type]
        if not ok:
            raise CompileError(
                f"the {backend!r} compiled model's outputs differ from the masked model's by {err:.2e} "
                f"(atol {atol:g}); this is a bug, please report it with the model"
            )
        same = stage is dense_copy  # nothing kept: the result is the dense copy, timed once, not against itself
        fns = (
            {"dense": lambda: call(ref, xs)}
            if same
            else {"dense": lambda: call(ref, xs), "compiled": lambda: call(stage, xs)}
        )
        if backend == "auto" and base is not stage and base is not dense_copy:
            fns["base"] = lambda: call(base, xs)
        with torch.inference_mode():
            t = measure(fns, repeats=repeats, device=dev)
        dense_ms = t["dense"]
        compiled_ms = t.get("compiled", dense_ms)
        best = "compiled" if same else min(t, key=t.get)  # type: ignore[arg-type]
        if backend == "auto" and best != "compiled":
            what = "layer backends" if best == "base" else "the compiled model"
            notes.append(f"{what} measured slower ({compiled_ms:.3f} vs {t[best]:.3f} ms {best}): not used")
            layers = [_as_dense(r, f"the whole model measured faster without ({best})") for r in layers]
            if best == "dense":
                stage, removed, err = ref, {}, 0.0
            else:
                stage = base
                with torch.inference_mode():
                    err = _close(_out(call(stage, xs)), y_ref, atol, rtol)[1]  # type: ignore[arg-type]
            compiled_ms = t[best]
    _check_ties(ref, stage)
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
        layers=tuple(layers),
        params_before=params_before,
        params_after=stored_weights(stage),
        removed_channels=removed,
        dense_ms=dense_ms,
        compiled_ms=compiled_ms,
        max_abs_err=err,
        notes=tuple(notes),
    )
    return stage, report


def _as_dense(r: LayerResult, why: str) -> LayerResult:
    if r.chosen == "dense":
        return r
    skipped = {**r.skipped, r.chosen: why}
    return LayerResult(r.name, r.shape, r.sparsity, "dense", r.tried, skipped, 0.0)


def _choose(
    name, mod, xin, cands, explicit, dev, atol, rtol, repeats, min_gain
) -> tuple[LayerResult, nn.Module | None]:
    w = mod.weight.detach()
    shape, sparsity = tuple(w.shape), float((w == 0).float().mean())
    skipped: dict[str, str] = {}
    if xin is None:
        why = "not called as a module in the forward pass (e.g. MultiheadAttention's out_proj): kept dense"
        return LayerResult(name, shape, sparsity, "dense", {}, {c.name: why for c in cands}), None
    with torch.inference_mode():
        y_dense = mod(xin)
    built: dict[str, tuple[nn.Module, float]] = {}
    for c in cands:
        why = c.check(mod, dev)
        if why:
            skipped[c.name] = why
            continue
        try:
            new = c.convert(mod).to(dev).eval()
            with torch.inference_mode():
                ok, err = _close(new(xin), y_dense, atol, rtol)
        except Exception as e:  # a kernel missing on this build/device: record it, keep dense
            skipped[c.name] = f"failed here: {type(e).__name__}: {e}"
            continue
        if not ok:
            skipped[c.name] = f"outputs differ from the masked layer by {err:.2e}"
            continue
        built[c.name] = (new, err)
    fns = {"dense": lambda: mod(xin)}
    for k, (new, _) in built.items():
        fns[k] = lambda new=new: new(xin)
    with torch.inference_mode():
        tried = measure(fns, repeats=repeats, device=dev)
    if explicit:
        chosen = next(iter(built), "dense")
    else:
        chosen = min(tried, key=tried.get)  # type: ignore[arg-type]
        if chosen != "dense" and tried[chosen] > tried["dense"] * (1 - min_gain):
            chosen = "dense"
        for k in built:
            if k != chosen:
                skipped[k] = f"measured {tried[k]:.3f} ms vs dense {tried['dense']:.3f} ms"
    if chosen == "dense":
        return LayerResult(name, shape, sparsity, "dense", tried, skipped, 0.0), None
    new, err = built[chosen]
    return LayerResult(name, shape, sparsity, chosen, tried, skipped, err), new
