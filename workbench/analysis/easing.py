"""Which layers to ease: the pruned layers whose removed weights cost the most agreement with a reference state.

`suggest_easing(bench, batches)` puts back one layer's pruned weights at a time (and the coupled slices that went
with its channels) inside a transaction, measures the agreement with the reference recovered, and suggests a lower
ratio for the top layers. The model and the bench's history are left bitwise unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .._interrupt import deferred_interrupt, settle
from ..errors import DataError, WorkbenchError
from ..evaluate import eval_mode, model_device, to_device
from ..plan import LayerPlan, Plan
from ..state import as_state
from ._stream import _pairs, _reference_index, _shape_of

__all__ = ["EasingSuggestion", "suggest_easing"]


@dataclass(frozen=True)
class EasingSuggestion:
    """Per pruned layer (most responsible first): ``layer``, ``ratio`` (its sparsity now), ``reference_ratio``,
    ``agreement`` (with its pruned weights put back), ``recovered`` (that minus `baseline`), ``suggested_ratio``.
    `top` are the layers to ease; `plan` re-prunes them at the suggested ratios (undo first: a plan never lowers a
    ratio in place)."""

    baseline: float
    rows: tuple[dict[str, Any], ...]
    top: tuple[str, ...]
    plan: Plan | None
    reference: int
    messages: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline,
            "rows": [dict(r) for r in self.rows],
            "top": list(self.top),
            "plan": None if self.plan is None else self.plan.to_dict(),
            "reference": self.reference,
            "messages": list(self.messages),
        }

    def __str__(self) -> str:
        return "\n".join([f"agreement with history entry {self.reference} now: {self.baseline:.3f}", *self.messages])


def _unit_masks(state, target, diff: dict[str, Tensor]) -> dict[str, Tensor]:
    """What putting back `target` restores: its own pruned elements, and for channels of it that are pruned whole,
    the slices coupled to them (BatchNorm channels, consumers' inputs, coupled producers)."""
    own = set(target.param_names())
    out = {p: diff[p].clone() for p in own if p in diff}
    groups = state.groups.groups if state.groups is not None else {}
    for gid in target.groups:
        grp = groups.get(gid)
        if grp is None:
            continue
        alive = torch.zeros(grp.size, dtype=torch.float64)
        covered = torch.zeros(grp.size, dtype=torch.float64)
        for m in grp.members:
            if not m.producer or m.param not in own:
                continue
            d = diff.get(m.param)
            n_dim = state.model.get_parameter(m.param).shape[m.dim]
            whole = torch.zeros(n_dim, dtype=torch.bool) if d is None else d.movedim(m.dim, 0).reshape(n_dim, -1).all(1)
            alive.index_add_(0, m.root, (~whole[m.index].cpu()).double())
            covered.index_add_(0, m.root, torch.ones(m.index.numel(), dtype=torch.float64))
        dead = (covered > 0) & (alive == 0)
        if not dead.any():
            continue
        shapes = {m.param: state.model.get_parameter(m.param).shape for m in grp.members}
        for p, mask in grp.masks(dead, shapes).items():
            if p in diff:
                extra = mask.to(diff[p].device) & diff[p]
                out[p] = extra if p not in out else out[p] | extra
    return {p: m for p, m in out.items() if bool(m.any())}


def suggest_easing(
    state, batches: Iterable, top: int = 3, *, reference: int | str = 0, ease: float = 0.5
) -> EasingSuggestion:
    """The layers whose pruning costs the most agreement with history entry `reference` (0 / "dense" by default)
    on `batches`: each pruned layer's removed weights are put back alone (a transaction, restored bitwise), and
    the agreement recovered ranks them. The top `top` get a suggested ratio `ease` of the way back to the
    reference's. The model and the bench's history are left exactly as they were."""
    from .states import at, logits

    state = as_state(state, error=WorkbenchError, what="suggest_easing needs the pruned model's Workbench")
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise WorkbenchError(f"top must be a positive int, got {top!r}")
    if not 0.0 < float(ease) <= 1.0:
        raise WorkbenchError(f"ease is the share of a layer's extra pruning to give back, in (0, 1], got {ease!r}")
    ref = _reference_index(state, reference)
    model = state.model
    dev = model_device(model)
    shape = _shape_of(state.example_inputs)
    xs = []
    for i, (x, _) in enumerate(_pairs(batches)):
        if not isinstance(x, Tensor) or (shape is not None and tuple(x.shape[1:]) != shape):
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise DataError(
                f"batch {i} has inputs of shape {got}; the model expects (batch, {', '.join(map(str, shape or ()))})"
            )
        xs.append(to_device(x, dev))
    if not xs:
        raise DataError("suggest_easing got no batches; pass an iterable of (inputs, labels) or input tensors")
    if ref == state.store.position:
        raise WorkbenchError(f"the model is at history entry {ref} itself: nothing is pruned relative to it")

    def predictions() -> Tensor:
        with eval_mode(model), torch.inference_mode():
            return torch.cat([logits(model, x).argmax(1) for x in xs])

    now_masks = state.store.masks()
    with at(state, ref):
        ref_preds = predictions()
        ref_masks = state.store.masks()
        diff = {}
        for p, m in now_masks.items():
            r = ref_masks.get(p)
            d = m if r is None else m & ~r.to(m.device)
            if d.any():
                diff[p] = d
        ref_values = {p: model.get_parameter(p).detach()[d.to(dev)].clone() for p, d in diff.items()}
    baseline = float((predictions() == ref_preds).float().mean())
    specs_now: dict[str, dict[str, Any]] = {}
    specs_ref: dict[str, dict[str, Any]] = {}
    for e in state.history[1 : state.store.position + 1]:
        specs_now.update(e.layers)
        if e.index <= ref:
            specs_ref.update(e.layers)
    rows = []
    for t in state.targets:
        unit = _unit_masks(state, t, diff)
        if not any(p in unit for p in t.param_names()):
            continue
        saved: dict[str, Tensor] = {}
        with state.store.transaction():  # a deliberate write, put back below: not an outside edit
            try:
                with deferred_interrupt(), torch.no_grad():
                    for p, m in unit.items():
                        param = model.get_parameter(p).detach()
                        md = m.to(param.device)
                        saved[p] = param[md].clone()
                        param.masked_scatter_(md, ref_values[p][m[diff[p]]].to(param.device))
                agree = float((predictions() == ref_preds).float().mean())
            finally:

                def restore(saved: dict[str, Tensor] = saved, unit: dict[str, Tensor] = unit) -> None:
                    with deferred_interrupt(), torch.no_grad():
                        for p, values in saved.items():
                            model.get_parameter(p).detach().masked_scatter_(unit[p].to(values.device), values)
                        saved.clear()

                settle(lambda saved=saved: not saved, restore)
        own = t.param_names()
        numel = sum(model.get_parameter(p).numel() for p in own)
        ratio = sum(int(now_masks[p].sum()) for p in own if p in now_masks) / numel
        ref_ratio = sum(int(ref_masks[p].sum()) for p in own if p in ref_masks) / numel
        spec = specs_now.get(t.name, {})
        if spec.get("granularity", "weight") != "weight":  # a structured ratio counts units, not weights
            ratio = spec["ratio"]
            ref_ratio = specs_ref.get(t.name, {}).get("ratio", 0.0)
        rows.append(
            {
                "layer": t.name,
                "granularity": spec.get("granularity", "weight"),
                "criterion": spec.get("criterion", "magnitude"),
                "ratio": ratio,
                "reference_ratio": ref_ratio,
                "agreement": agree,
                "recovered": agree - baseline,
                "suggested_ratio": ref_ratio + (ratio - ref_ratio) * (1.0 - float(ease)),
            }
        )
    rows.sort(key=lambda r: -r["recovered"])
    chosen = [r for r in rows[:top] if r["recovered"] > 0]
    layers = {}
    messages = []
    for r in chosen:
        layers[r["layer"]] = LayerPlan(min(r["suggested_ratio"], 0.99), r["granularity"], r["criterion"])
        messages.append(
            f"putting back {r['layer']!r} recovers {r['recovered']:+.3f} agreement ({baseline:.3f} -> "
            f"{r['agreement']:.3f}); ease its ratio from {r['ratio']:.2f} to {r['suggested_ratio']:.2f}"
        )
    if not chosen:
        messages.append("no single layer recovers agreement when put back: the disagreement is spread over layers")
    return EasingSuggestion(
        baseline=baseline,
        rows=tuple(rows),
        top=tuple(r["layer"] for r in chosen),
        plan=Plan(layers) if layers else None,
        reference=ref,
        messages=tuple(messages),
    )
