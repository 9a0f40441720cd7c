"""Profile: per layer and in total, parameters, non-zeros, FLOPs (dense and effective), measured latency and
activation and parameter memory.

Dense FLOPs come from `torch.utils.flop_counter.FlopCounterMode` (not hand formulas). Effective FLOPs scale a
layer's dense FLOPs by the share of its weights that are non-zero: what a sparse kernel could skip at best;
a masked dense model still computes every multiply (its measured latency says so). Latency is the median of
`repeats` timed calls, per layer on the inputs it sees in one forward pass and end to end for the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

from .._text import table_lines
from ..adapter import repeat
from ..errors import DataError
from ..evaluate import call, eval_mode, model_device, to_device
from ..state import as_state

__all__ = ["ProfileResult", "profile"]


@dataclass(frozen=True)
class ProfileResult:
    """Arrays align with `layers`; `total_*` cover the whole model (all ops, not only targets)."""

    layers: tuple[str, ...]
    kinds: tuple[str, ...]
    params: np.ndarray
    nonzeros: np.ndarray
    flops_dense: np.ndarray
    flops_effective: np.ndarray
    latency_ms: np.ndarray
    activation_bytes: np.ndarray
    param_bytes: np.ndarray
    total_flops_dense: int
    total_flops_effective: int
    total_latency_ms: float
    total_params: int
    batch_size: int
    device: str
    repeats: int
    notes: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for k, v in self.__dict__.items():
            out[k] = v.tolist() if isinstance(v, np.ndarray) else list(v) if isinstance(v, tuple) else v
        return out

    def to_pandas(self):
        import pandas as pd

        cols = ["params", "nonzeros", "flops_dense", "flops_effective", "latency_ms", "activation_bytes", "param_bytes"]
        return pd.DataFrame({c: getattr(self, c) for c in cols}, index=list(self.layers))

    def __str__(self) -> str:
        head = ("layer", "params", "nonzeros", "MFLOPs", "eff MFLOPs", "ms", "act KiB")
        rows = [head]
        for i, name in enumerate(self.layers):
            rows.append(
                (
                    name,
                    f"{self.params[i]:,}",
                    f"{self.nonzeros[i]:,}",
                    f"{self.flops_dense[i] / 1e6:.3f}",
                    f"{self.flops_effective[i] / 1e6:.3f}",
                    f"{self.latency_ms[i]:.3f}",
                    f"{self.activation_bytes[i] / 1024:.1f}",
                )
            )
        lines = table_lines(rows, right=range(1, len(head)))
        lines.append(
            f"model: {self.total_params:,} params, {self.total_flops_dense / 1e6:.3f} MFLOPs dense, "
            f"{self.total_flops_effective / 1e6:.3f} effective, {self.total_latency_ms:.3f} ms end to end "
            f"(batch {self.batch_size}, {self.device}, median of {self.repeats})"
        )
        return "\n".join(lines)


def _batch(example: Any, batch_size: int) -> Any:
    """`batch_size` rows of the example inputs (a tensor, a tuple, or a dict of keyword inputs), repeated as needed."""
    return repeat(example, batch_size)


def _median_ms(fn, repeats: int) -> float:
    """Median ms of `repeats` single calls after two warm-up calls (the one timer: `workbench.sparse.timing`)."""
    from ..sparse.timing import median_ms

    return median_ms(fn, repeats)


def _nbytes(out: Any) -> int:
    if isinstance(out, Tensor):
        return out.nbytes
    if isinstance(out, (tuple, list)):
        return sum(_nbytes(o) for o in out)
    return 0


def profile(
    state, *, batch_size: int = 64, repeats: int = 20, layers: Sequence[str] | None = None, per_layer: bool = True
) -> ProfileResult:
    """Measure the model as it is now; see the module docstring. The model is not changed.
    ``per_layer=False`` skips the per-layer timings (NaN), for a quick FLOPs + end-to-end reading."""
    state = as_state(state)
    model = state.model
    if state.example_inputs is None:
        raise DataError("profile needs example inputs: create the Workbench with data or example_inputs")
    if batch_size < 1 or repeats < 1:
        raise DataError(f"batch_size and repeats must be >= 1, got {batch_size} and {repeats}")
    device = model_device(model)
    x = to_device(_batch(state.example_inputs, batch_size), device)
    names = (
        [state.targets[n].name for n in layers]
        if layers is not None
        else [t.name for t in state.targets if not t.tied_to]
    )
    modules = dict(model.named_modules())
    captured: dict[str, tuple[tuple, dict, Any]] = {}
    handles = []
    with eval_mode(model), torch.inference_mode():

        def grab(name: str):
            def hook(m, args, kwargs, out) -> None:  # returns None: the output is not replaced
                captured.setdefault(name, (args, kwargs, out))

            return hook

        try:  # temporary hooks record each layer's inputs and output once; removed before anything else runs
            for name in names:
                handles.append(modules[name].register_forward_hook(grab(name), with_kwargs=True))
            call(model, x)
        finally:
            for h in handles:
                h.remove()
        # with autograd on, nn.TransformerEncoder skips its fused fast path, whose FLOPs the counter cannot see
        with torch.inference_mode(False), torch.enable_grad(), FlopCounterMode(display=False) as counter:
            call(model, x.clone() if isinstance(x, Tensor) else x)
        flops = {k.split(".", 1)[1] if "." in k else "": sum(v.values()) for k, v in counter.get_flop_counts().items()}
        total = int(counter.get_total_flops())
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

        def run_model():
            call(model, x)
            sync()

        total_ms = _median_ms(run_model, repeats)
        lat, act, notes = [], [], {}
        for name in names:
            if name not in captured:
                lat.append(np.nan)
                act.append(0)
                notes[name] = "not called as a module in the forward pass (e.g. attention's out_proj)"
                continue
            a, k, o = captured[name]

            def run_layer(m=modules[name], a=a, k=k):
                m(*a, **k)
                sync()

            lat.append(_median_ms(run_layer, repeats) if per_layer else np.nan)
            act.append(_nbytes(o))
    params, nonzeros, pbytes, kinds, fd = [], [], [], [], []
    with torch.no_grad():
        for name in names:
            t = state.targets[name]
            ps = [model.get_parameter(p) for p in t.param_names()]
            params.append(sum(p.numel() for p in ps))
            nonzeros.append(sum(int(torch.count_nonzero(p)) for p in ps))
            pbytes.append(sum(p.nbytes for p in modules[name].parameters()))
            kinds.append(t.kind)
            fd.append(flops.get(name, 0))
    params_a, nz_a, fd_a = np.array(params), np.array(nonzeros), np.array(fd, dtype=float)
    eff = fd_a * np.where(params_a > 0, nz_a / np.maximum(params_a, 1), 1.0)
    return ProfileResult(
        layers=tuple(names),
        kinds=tuple(kinds),
        params=params_a,
        nonzeros=nz_a,
        flops_dense=fd_a,
        flops_effective=eff,
        latency_ms=np.array(lat, dtype=float),
        activation_bytes=np.array(act),
        param_bytes=np.array(pbytes),
        total_flops_dense=total,
        total_flops_effective=round(total - float((fd_a - eff).sum())),
        total_latency_ms=total_ms,
        total_params=sum(p.numel() for p in model.parameters()),
        batch_size=batch_size,
        device=str(device),
        repeats=repeats,
        notes=notes,
    )
