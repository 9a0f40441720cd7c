"""What `compare` measures of the live model as it is now, and of the model one would deploy from it."""

from __future__ import annotations

import io
import statistics
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from ..evaluate import call, eval_mode, model_device, to_device
from ..sparse.timing import samples


# measuring ----------------------------------------------------------------------------------------------------
def _inputs(state, batch_size: int) -> Any:
    """`batch_size` rows of real inputs (the evaluation data's first batches, repeated if needed)."""
    if state.data is None:
        return to_device(state.example_inputs, model_device(state.model))
    return state.adapter.rows(state.data, batch_size)


def _flops(module: nn.Module, x: Any) -> int:
    with eval_mode(module), torch.enable_grad(), FlopCounterMode(display=False) as counter:
        call(module, x)  # autograd on: nn.TransformerEncoder's fused path hides its FLOPs from the counter
    return int(counter.get_total_flops())


def _size_bytes(module: nn.Module) -> int:
    buf = io.BytesIO()
    torch.save(module.state_dict(), buf)
    return buf.tell()


def _nonzero_params(module: nn.Module) -> int:
    return sum(int(torch.count_nonzero(p)) for p in module.parameters())


def _latencies(state, start: int, end: int, deployed: nn.Module, x: Any, repeats: int) -> dict[str, float]:
    """Median ms per call of the model at the start state, the masked model now and the deployed model, measured
    in interleaved rounds: the live model moves between the two states (exact undo/redo, not timed) between
    blocks, so a busy machine slows all three alike and no copy of the start model is needed."""
    model, store = state.model, state.store
    fns = {"start": lambda: call(model, x), "masked": lambda: call(model, x)}
    if deployed is not model:
        fns["deployed"] = lambda: call(deployed, x)
    before = {k: (lambda s=(start if k == "start" else end): store.goto_(s)) for k in fns}
    with eval_mode(model), eval_mode(deployed), torch.inference_mode():
        got = samples(fns, repeats=repeats, min_block_s=0.004, max_calls=1 << 12, device=model_device(model),
                      before=before)  # fmt: skip
    out = {k: statistics.median(v) for k, v in got.items()}
    # each round's start and deployed blocks ran back to back: the median of their ratios is the speedup least
    # disturbed by other work on the machine (a slow spell hits both blocks of a round alike)
    last = got.get("deployed", got["masked"])
    out["speedup"] = statistics.median(a / b for a, b in zip(got["start"], last))
    return out


def _measure(state, data, x, backend, repeats, start: int | None) -> dict[str, Any]:
    """Everything a row reports about the live model as it is now (and the model deployed from it); latencies are
    measured interleaved with the state at position `start` (None: the current state, for the baseline)."""
    from ..analysis.profile import profile
    from ..report import target_sparsity

    model = state.model
    ev = state.evaluate(data)
    prof = profile(state, batch_size=1, repeats=1, per_layer=False)
    x1 = x[:1] if isinstance(x, Tensor) else x
    deployed, how = model, "masked"
    if backend in ("shrink", "auto"):
        deployed, how = _deploy(state, backend, x)
    out = {
        "metric_name": ev["metric_name"],
        "metric": float(ev["metric"]),
        "accuracy": ev.get("accuracy"),
        "achieved": float(target_sparsity(model, state.targets)),
        "params": _nonzero_params(model),
        "params_deployed": sum(p.numel() for p in deployed.parameters()),
        "flops": int(prof.total_flops_effective),
        "flops_deployed": _flops(deployed, x1),
        "latency_ms": None,
        "masked_latency_ms": None,
        "start_latency_ms": None,
        "speedup": None,
        "size_bytes": _size_bytes(deployed),
        "deployed": how,
    }
    if backend is not None:
        end = state.store.position
        t = _latencies(state, end if start is None else start, end, deployed, x, repeats)
        out["start_latency_ms"], out["masked_latency_ms"] = t["start"], t["masked"]
        out["latency_ms"] = t.get("deployed", t["masked"])
        out["speedup"] = t["speedup"]
    return out


def _deploy(state, backend: str, x: Any) -> tuple[nn.Module, str]:
    """The model one would ship: `compile`'s output when it builds something other than the masked model."""
    from ..sparse import compile
    from ..sparse.shrink import prunable_channels

    if backend == "shrink":
        groups = state.groups
        params = dict(state.model.named_parameters(remove_duplicate=False))  # tied tensors under every name
        if groups is None or not prunable_channels(groups, params, state.store.masks()):
            return state.model, "masked"  # nothing to remove physically: the masked model is what runs
    fast, rep = compile(state, backend=backend, batch_size=x.shape[0] if isinstance(x, Tensor) else 64)
    if backend == "auto" and not rep.removed_channels and all(c == "dense" for c in rep.chosen.values()):
        return state.model, "masked"  # compile kept the dense copy: time the model itself, not a copy of it
    used = "shrink" if rep.removed_channels else ""
    layer = sorted({c for c in rep.chosen.values() if c != "dense"})
    return fast, "+".join(filter(None, [used, *layer])) or backend
