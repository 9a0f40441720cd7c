"""Pruning + quantization: dynamic int8 (or fp16) quantization of a pruned model, and a side-by-side profile.

`quantize` returns a **new** module (the live model is never changed) with its Linear and LSTM/GRU layers replaced
by `torch.ao.quantization.quantize_dynamic`'s dynamically quantized versions: weights stored as int8, activations
quantized on the fly per batch. It runs on the CPU. Weights are quantized per tensor and symmetrically, so a
pruned weight (exactly 0) stays exactly 0 in int8: pruning and quantization compose. Conv layers are not
dynamically quantizable and stay float. (`torch.ao.quantization` is deprecated in favour of torchao; it works in
the torch this project pins, and its deprecation warnings are silenced here.)

>>> import torch, workbench as wb
>>> model = torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
>>> q = wb.quantize(model, "int8-dynamic")
>>> q[0]._get_name(), model[0]._get_name()
('DynamicQuantizedLinear', 'Linear')
"""

from __future__ import annotations

import copy
import io
import statistics
import time
import warnings
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ._text import table_lines
from .errors import WorkbenchError
from .evaluate import evaluate, model_device
from .state import as_state

__all__ = ["SCHEMES", "QuantProfile", "QuantizationError", "quantize", "quantize_profile"]

SCHEMES = {"int8-dynamic": "torch.qint8", "fp16-dynamic": "torch.float16"}
_LAYERS = (nn.Linear, nn.LSTM, nn.GRU, nn.LSTMCell, nn.GRUCell, nn.RNNCell)


class QuantizationError(WorkbenchError, ValueError):
    """A quantization scheme that is unknown, or not available on this platform."""


def _engine() -> str:
    engines = [e for e in torch.backends.quantized.supported_engines if e != "none"]
    if not engines:
        raise QuantizationError(
            "no quantized engine is available on this platform (torch.backends.quantized.supported_engines is "
            f"{torch.backends.quantized.supported_engines}); dynamic int8 needs fbgemm/x86 (x86 CPUs) or qnnpack "
            "(ARM). Use a CPU build of torch for x86 or ARM, or skip quantization"
        )
    current = torch.backends.quantized.engine
    return current if current in engines else next(e for e in ("x86", "fbgemm", "onednn", "qnnpack") if e in engines)


def quantize(bench_or_model: Any, scheme: str = "int8-dynamic", *, layers: tuple[type, ...] = _LAYERS) -> nn.Module:
    """A new, dynamically quantized copy of a Workbench's live model (or of any module), in eval mode on the CPU.

    `scheme`: ``"int8-dynamic"`` (int8 weights, activations quantized per batch) or ``"fp16-dynamic"`` (fp16
    weights). `layers`: the module types to quantize (Linear, LSTM, GRU and RNN cells by default). The original
    is left exactly as it was (its train/eval flag included); a model on an accelerator is copied to the CPU.
    """
    model = bench_or_model
    if not isinstance(model, nn.Module):
        model = as_state(
            bench_or_model, error=QuantizationError, what="quantize needs a Workbench or an nn.Module"
        ).model
    if scheme not in SCHEMES:
        raise QuantizationError(f"unknown quantization scheme {scheme!r}; available: {', '.join(SCHEMES)}")
    engine = _engine()
    dtype = torch.qint8 if scheme == "int8-dynamic" else torch.float16
    if not any(isinstance(m, layers) for m in model.modules()):
        warnings.warn(
            f"{type(model).__name__} has no {'/'.join(t.__name__ for t in layers)} layer: {scheme} leaves it as it is",
            stacklevel=2,
        )
    clone = copy.deepcopy(model)
    if model_device(clone).type != "cpu":
        clone = clone.cpu()
    clone.eval()
    old = torch.backends.quantized.engine
    try:
        torch.backends.quantized.engine = engine
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")
            from torch.ao.quantization import quantize_dynamic

            q = quantize_dynamic(clone, set(layers), dtype=dtype, inplace=True)
    finally:
        torch.backends.quantized.engine = old
    for m in q.modules():  # the copy only: nn.Transformer*Layer's inference fast path reads float `linear.weight`
        if isinstance(m, (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)) and callable(
            getattr(m.linear1, "weight", None)
        ):
            m.activation_relu_or_gelu = False  # a flag read only by the fast-path checks: take the regular path
    return q


@dataclass(frozen=True)
class QuantProfile:
    """One row per variant (dense, pruned, quantized, pruned+quantized): serialized size (raw and zlib-compressed
    bytes: pruning saves space only once compressed or stored sparse), CPU latency (median ms for one batch),
    metric and loss, the sparsity of the prunable float weights it was made from, and `zeros_kept` (quantized
    variants: every zero Linear weight is exactly 0 in int8; None when no Linear was quantized). `info` says how
    it was measured."""

    rows: tuple[dict[str, Any], ...]
    metric_name: str
    info: dict[str, Any] = field(default_factory=dict)

    def table(self) -> str:
        head = ("variant", "size KiB", "zipped KiB", "latency ms", self.metric_name, "sparsity", "int8 zeros kept")
        lines = [head] + [
            (
                r["variant"],
                f"{r['bytes'] / 1024:.1f}",
                f"{r['zipped'] / 1024:.1f}",
                f"{r['latency_ms']:.3f}",
                f"{r['metric']:.4f}",
                f"{r['sparsity']:.1%}",
                {None: "-", True: "yes", False: "NO"}[r["zeros_kept"]],
            )
            for r in self.rows
        ]
        return "\n".join(table_lines(lines, sep=" | ", rule="-+-"))

    def __str__(self) -> str:
        return self.table()

    def to_dict(self) -> dict[str, Any]:
        return {"rows": [dict(r) for r in self.rows], "metric_name": self.metric_name, "info": dict(self.info)}

    def to_pandas(self):
        import pandas as pd

        return pd.DataFrame(list(self.rows))


def _size(model: nn.Module) -> tuple[int, int]:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    raw = buf.getvalue()
    return len(raw), len(zlib.compress(raw, 6))


def _batch(data: Iterable, n: int, adapter) -> Any:
    return adapter.rows(data, n)


def _latency(model: nn.Module, x: Any, repeats: int) -> float:
    from .evaluate import call

    times = []
    with torch.inference_mode():
        for _ in range(3):
            call(model, x)
        for _ in range(repeats):
            t0 = time.perf_counter()
            call(model, x)
            times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def _sparsity(model: nn.Module, names: list[str]) -> float:
    """Share of zeros among the named (prunable) float weights."""
    total = sum(model.get_parameter(n).numel() for n in names)
    return sum(int((model.get_parameter(n) == 0).sum()) for n in names) / max(total, 1)


def zeros_kept(source: nn.Module, quantized: nn.Module) -> bool | None:
    """Whether every zero weight of `source`'s Linear layers is exactly 0 in `quantized` (None: none quantized)."""
    qmods = dict(quantized.named_modules())
    seen = False
    for name, m in source.named_modules():
        q = qmods.get(name)
        if isinstance(m, nn.Linear) and q is not None and callable(getattr(q, "weight", None)):
            w = q.weight()
            w = w.int_repr() if w.is_quantized else w
            seen = True
            if not bool((w[m.weight.detach() == 0] == 0).all()):
                return False
    return True if seen else None


def quantize_profile(
    bench, scheme: str = "int8-dynamic", *, dense: int = 0, batch: int = 256, repeats: int = 30
) -> QuantProfile:
    """Dense, pruned (the bench's current state), quantized and pruned+quantized side by side: size, latency,
    metric on the bench's evaluation data, and sparsity of the conv/linear weights.

    The dense variant is history entry `dense` rebuilt as a frozen structural clone from the store's undo data
    (the live model is not moved); every variant runs on the CPU on one batch of `batch` evaluation samples,
    `repeats` timed calls after 3 warm-up calls (median), with the current `torch.get_num_threads()`.
    """
    from .training._state import frozen_clone, state_at

    if bench.data is None:
        raise QuantizationError("quantize_profile evaluates each variant: create the Workbench with evaluation data")
    live = bench.model
    dense_model = frozen_clone(live, state_at(bench, dense))
    from .training._loop import pool

    names = pool(bench)
    sources = {"dense": dense_model, "pruned": live}
    variants = [("dense", dense_model, None), ("pruned", live, None)]
    variants += [
        (scheme, quantize(dense_model, scheme), "dense"),
        (f"pruned + {scheme}", quantize(live, scheme), "pruned"),
    ]
    x = _batch(bench.data, batch, bench.adapter)
    rows = []
    for name, model, source in variants:
        raw, zipped = _size(model)
        flags = [(m, m.training) for m in model.modules()]
        model.eval()
        try:
            m = evaluate(model, bench.data, bench.metric, adapter=bench.adapter)
            lat = _latency(model, x, repeats)
        finally:
            for mod, flag in flags:
                mod.training = flag
        src = sources[source] if source else model
        rows.append(
            {
                "variant": name,
                "bytes": raw,
                "zipped": zipped,
                "latency_ms": lat,
                "metric": float(m["metric"]),
                "loss": float(m["loss"]),
                "sparsity": _sparsity(src, names),
                "zeros_kept": None if source is None else zeros_kept(src, model),
            }
        )
    info = {"scheme": scheme, "batch": int(x.shape[0]) if isinstance(x, Tensor) else None, "repeats": repeats}
    info["threads"] = torch.get_num_threads()
    info["engine"] = _engine()
    name = bench.metric if isinstance(bench.metric, str) else getattr(bench.metric, "__name__", "metric")
    return QuantProfile(tuple(rows), name, info)
