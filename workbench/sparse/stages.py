"""The stages of `compile`, each a function of one `CompileState`: `prepare` (copy, inputs, reference outputs),
`model_stage` (a model-level backend rewrites the whole copy: the registered `build` of ``shrink``, or of any
model-level backend, chosen by name or by `auto`'s measurement), `layer_stage` (layer backends replace single
layers) and `finish` (check the outputs, time, and make `auto` never slower than dense)."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..adapter import call, split
from ..branches import dead_branches, remove_branches
from ..groups import analyze_groups
from ..state import as_state
from ._inputs import _batch, _capture, _cast, _close, _out
from ._ties import _aliases, _by_every_name, _masks_by_every_name, _tied_names, _untied_groups
from .backends import Backend, CompileError, available_backends, get_backend
from .report import LayerResult, stored_weights
from .shrink import prunable_channels, shrink_, shrink_heads_, shrink_rnn_units_, shrink_rule_groups_, traceable
from .timing import measure


@dataclass
class CompileState:
    """What the stages share: the request, the reference copy and its outputs, and what each stage decided."""

    model: nn.Module
    groups: Any
    masks: dict[str, Tensor] | None
    backend: str
    b: Backend | None
    dev: torch.device
    dtype: torch.dtype | None
    batch_size: int
    repeats: int
    min_gain: float
    atol: float
    rtol: float
    ref: nn.Module = None  # type: ignore[assignment]
    xs: Any = None
    y_ref: Tensor | None = None
    params_before: int = 0
    dense_copy: nn.Module = None  # type: ignore[assignment]
    stage: nn.Module = None  # type: ignore[assignment]  # the model as compiled so far
    base: nn.Module = None  # type: ignore[assignment]  # the model after the model stage
    removed: dict[str, int] = field(default_factory=dict)
    layers: list[LayerResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    dense_ms: float | None = None
    compiled_ms: float | None = None
    err: float = 0.0


def _replace(root: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, new)


def _source(obj: Any, example: Any):
    """(model, groups, masks, example inputs, data, plans) of a Workbench or a plain module."""
    if isinstance(obj, nn.Module):
        return obj, None, None, example, None, []
    obj = as_state(obj, error=CompileError, what="compile takes a Workbench or an nn.Module")
    model = obj.model
    plans = [e.plan for e in obj.history[1:] if e.active and e.plan is not None]
    ex = example if example is not None else obj.example_inputs
    return model, obj.groups, obj.store.masks(), ex, obj.data, plans


def prepare(st: CompileState, example: Any, data: Iterable | None, adapter: Any) -> None:
    """The reference copy on the target device and dtype, the input batch, and the masked model's outputs."""
    st.ref = copy.deepcopy(st.model).to(device=st.dev, dtype=st.dtype).eval()
    xs = _batch(example, data, st.batch_size, adapter.split if adapter is not None else split)
    if xs is None and st.backend != "dense":
        raise CompileError(
            f"backend {st.backend!r} runs the model to trace or time it: pass example_inputs (a batch of model "
            "inputs), or compile a Workbench that has evaluation data"
        )
    st.xs = None if xs is None else _cast(xs, st.dev, st.dtype)
    with torch.inference_mode():
        st.y_ref = None if st.xs is None else _out(call(st.ref, st.xs))
    st.params_before = stored_weights(st.ref)
    st.stage = st.dense_copy = copy.deepcopy(st.ref)


def _same(st: CompileState, module: nn.Module) -> tuple[bool, float]:
    """`module`'s outputs on the batch match the masked model's (and the largest difference)."""
    with torch.inference_mode():
        return _close(_out(call(module, st.xs)), st.y_ref, st.atol, st.rtol)  # type: ignore[arg-type]


def _model_builders(st: CompileState) -> list[Backend]:
    """The model-level backends this compile tries: the one named, or (auto) every registered one with a `build`
    that runs on the device."""
    if st.backend == "auto":
        return [
            b for b in (get_backend(n) for n in available_backends())
            if b.level == "model" and b.build is not None and st.dev.type in b.devices
        ]  # fmt: skip
    return [st.b] if st.b is not None and st.b.level == "model" and st.b.build is not None else []


def model_stage(st: CompileState) -> None:
    """Rewrite the whole copy with a model-level backend; `auto` keeps a rewrite only if it is not slower."""
    built: dict[str, tuple[nn.Module, dict[str, int]]] = {}
    for b in _model_builders(st):
        st.removed = {}
        new = b.build(st)  # type: ignore[misc]
        if new is not None:
            built[b.name] = (new, st.removed)
    st.removed = {}
    if built and st.backend != "auto":
        st.stage, st.removed = built[st.backend]
    elif built:  # auto: keep a rewritten model only if it is not slower than the dense copy
        fns = {"dense": lambda: call(st.ref, st.xs)}
        fns.update({k: (lambda m=m: call(m, st.xs)) for k, (m, _) in built.items()})
        with torch.inference_mode():
            t = measure(fns, repeats=st.repeats, device=st.dev)
        for k in built:
            if t[k] > t["dense"]:
                st.notes.append(f"{k} measured slower than dense ({t[k]:.3f} vs {t['dense']:.3f} ms); not used")
        fastest = min(built, key=lambda k: t[k])
        if t[fastest] <= t["dense"]:
            st.stage, st.removed = built[fastest]
    st.base = st.stage


def shrink_build(st: CompileState) -> nn.Module | None:
    """The ``shrink`` backend: whole residual branches, fully pruned coupled channels, attention heads and
    recurrent units physically removed, each only where the outputs stay those of the masked model. None when
    nothing was removed; what was removed goes to `st.removed`."""
    ref, xs, backend, notes = st.ref, st.xs, st.backend, st.notes
    groups = st.groups
    removed = st.removed
    shrunk = None
    if groups is None:
        with traceable(ref):
            groups = analyze_groups(ref, xs)  # read-only, and on our copy
    if groups.error:
        notes.append(f"shrink: {groups.error}")
    params, tied = _by_every_name(ref)  # tied tensors under every name: groups name them per module
    ref_masks = _masks_by_every_name(st.masks, params, tied)
    source = ref
    dead = dead_branches(ref, groups.branches.values(), ref_masks)
    if dead:  # whole residual branches (granularity 'layer'): cut them out of the graph first
        cut = remove_branches(ref, dead)
        ok, err = _same(st, cut)
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
        ok, err = _same(st, shrunk)
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
        (rules, shrink_rule_groups_, "rules", "attention heads, MLP neurons and hidden channels"),  # by members
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
        ok, err = _same(st, slim)
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
    return shrunk


def layer_stage(st: CompileState) -> None:
    """Replace single Linear/Conv2d layers with a layer backend: the one named, or (auto) the fastest measured
    that keeps the layer's outputs, by at least `min_gain`."""
    b, backend, dev = st.b, st.backend, st.dev
    if not (backend == "auto" or (b is not None and b.level == "layer")):
        return
    cands = [get_backend(n) for n in available_backends() if get_backend(n).level == "layer"]
    cands = [c for c in cands if dev.type in c.devices] if backend == "auto" else [b]
    stage = copy.deepcopy(st.base) if backend == "auto" else st.base
    inputs = _capture(stage, st.xs)  # type: ignore[arg-type]
    tied = _tied_names(_aliases(stage))
    replaced = 0
    layers = st.layers
    for name, mod in list(stage.named_modules()):
        if not isinstance(mod, (nn.Linear, nn.Conv2d)):
            continue
        shared = next((f"{name}.{k}" for k, _ in mod.named_parameters(recurse=False) if f"{name}.{k}" in tied), None)
        if shared is not None:  # a sparse copy of one holder would leave two tensors where there is one
            why = f"{shared!r} is tied to {', '.join(map(repr, tied[shared]))}: converting it would untie them; kept dense"
            w = mod.weight.detach()
            layers.append(
                LayerResult(
                    name, tuple(w.shape), float((w == 0).float().mean()), "dense", {}, {c.name: why for c in cands}
                )
            )
            continue
        res, new = _choose(name, mod, inputs.get(name), cands, backend != "auto", st)
        if new is not None:
            _replace(stage, name, new)
            try:  # a parent may read the layer's .weight itself (TransformerEncoderLayer's fast-path check)
                with torch.inference_mode():
                    _out(call(stage, st.xs))  # type: ignore[misc]
                replaced += 1
            except Exception as e:
                _replace(stage, name, mod)
                res = _as_dense(res, f"the model fails with it replaced ({type(e).__name__}: {e}); kept dense")
        layers.append(res)
    if b is not None and not replaced:
        why = "; ".join(f"{r.name}: {r.skipped.get(backend, '?')}" for r in layers) or "the model has no Linear layer"
        raise CompileError(f"backend {backend!r} could not take any layer ({why}). It needs {b.requires}.")
    st.stage = stage if replaced else st.base


def finish(st: CompileState) -> None:
    """Check the compiled outputs, time it against the dense copy; `auto` falls back to what measured fastest."""
    if st.xs is None:
        return
    ref, xs, stage, base = st.ref, st.xs, st.stage, st.base
    ok, st.err = _same(st, stage)
    if not ok:
        raise CompileError(
            f"the {st.backend!r} compiled model's outputs differ from the masked model's by {st.err:.2e} "
            f"(atol {st.atol:g}); this is a bug, please report it with the model"
        )
    same = stage is st.dense_copy  # nothing kept: the result is the dense copy, timed once, not against itself
    fns = (
        {"dense": lambda: call(ref, xs)}
        if same
        else {"dense": lambda: call(ref, xs), "compiled": lambda: call(stage, xs)}
    )
    if st.backend == "auto" and base is not stage and base is not st.dense_copy:
        fns["base"] = lambda: call(base, xs)
    with torch.inference_mode():
        t = measure(fns, repeats=st.repeats, device=st.dev)
    st.dense_ms = t["dense"]
    st.compiled_ms = t.get("compiled", st.dense_ms)
    best = "compiled" if same else min(t, key=t.get)  # type: ignore[arg-type]
    if st.backend == "auto" and best != "compiled":
        what = "layer backends" if best == "base" else "the compiled model"
        st.notes.append(f"{what} measured slower ({st.compiled_ms:.3f} vs {t[best]:.3f} ms {best}): not used")
        st.layers = [_as_dense(r, f"the whole model measured faster without ({best})") for r in st.layers]
        if best == "dense":
            st.stage, st.removed, st.err = ref, {}, 0.0
        else:
            st.stage = base
            st.err = _same(st, base)[1]
        st.compiled_ms = t[best]


def _as_dense(r: LayerResult, why: str) -> LayerResult:
    if r.chosen == "dense":
        return r
    skipped = {**r.skipped, r.chosen: why}
    return LayerResult(r.name, r.shape, r.sparsity, "dense", r.tried, skipped, 0.0)


def _choose(
    name: str, mod: nn.Module, xin: Tensor | None, cands: Sequence[Backend], explicit: bool, st: CompileState
) -> tuple[LayerResult, nn.Module | None]:
    """The backend for one layer: each candidate valid here is built and checked on the layer's real input, then
    timed against the dense layer."""
    dev, atol, rtol, repeats, min_gain = st.dev, st.atol, st.rtol, st.repeats, st.min_gain
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
