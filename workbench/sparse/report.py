"""What `compile` returns, as plain data: one `LayerResult` per Linear/Conv layer, the `CompileReport`, and the
`CompileResult` holding the new module with its report."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

from .._text import table_lines
from .modules import _SparseBase

__all__ = ["CompileReport", "CompileResult", "LayerResult", "stored_weights"]


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


@dataclass(frozen=True, eq=False)
class CompileResult:
    """What `compile` returns: the new `module` and the `report` of how it was built.

    It unpacks and indexes like the pair ``(module, report)``, so ``fast, rep = wb.sparse.compile(...)``,
    ``result[0]`` and ``result[1]`` work; ``result.module`` and ``result.report`` say the same by name.

    >>> import torch, workbench as wb
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    >>> result = wb.sparse.compile(model, backend="dense")
    >>> fast, rep = result
    >>> fast is result.module is result[0], rep is result.report is result[1], len(result)
    (True, True, 2)
    """

    module: nn.Module
    report: CompileReport

    def __iter__(self) -> Iterator[Any]:
        return iter((self.module, self.report))

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int | slice) -> Any:
        return (self.module, self.report)[index]

    def __repr__(self) -> str:
        m = self.module
        head = (
            f"CompileResult(module={type(m).__name__} with {stored_weights(m):,} stored weights, "
            f"report=CompileReport(...)); unpacks as (module, report)"
        )
        return f"{head}\n{self.report.table()}"


def stored_weights(module: nn.Module) -> int:
    """Numbers a module stores for its weights: parameters, plus the values of sparse layers."""
    n = sum(p.numel() for p in module.parameters())
    for m in module.modules():
        if isinstance(m, _SparseBase):
            v = getattr(m, "values", None)
            n += int(v.numel()) if v is not None else int(m.weight.numel()) // 2  # 2:4 keeps half
    return n
