"""Reports are plain data: per-layer parameters, non-zeros and sparsity, with the metric before and after."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from ._text import table_lines
from .masks.fastops import count_nonzero
from .targets import Targets

__all__ = ["LayerReport", "Report", "layer_reports", "target_sparsity"]


@dataclass(frozen=True)
class LayerReport:
    name: str
    kind: str
    params: int
    nonzeros: int

    @property
    def sparsity(self) -> float:
        return 1.0 - self.nonzeros / self.params if self.params else 0.0


@dataclass(frozen=True)
class Report:
    """What the model is now vs dense. `params`/`nonzeros` count the targets' prunable tensors;
    `model_params` every parameter (biases, norms' shifts, ...); `dense`/`now` are evaluation dicts."""

    layers: tuple[LayerReport, ...]
    model_params: int
    dense: dict[str, Any] | None
    now: dict[str, Any] | None
    steps: int
    start_sparsity: float = 0.0  # share of target weights already at zero when the Workbench attached

    @property
    def params(self) -> int:
        return sum(r.params for r in self.layers)

    @property
    def nonzeros(self) -> int:
        return sum(r.nonzeros for r in self.layers)

    @property
    def sparsity(self) -> float:
        return 1.0 - self.nonzeros / self.params if self.params else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "layers": [{**asdict(r), "sparsity": r.sparsity} for r in self.layers],
            "params": self.params,
            "nonzeros": self.nonzeros,
            "sparsity": self.sparsity,
            "model_params": self.model_params,
            "dense": self.dense,
            "now": self.now,
            "steps": self.steps,
            "start_sparsity": self.start_sparsity,
        }

    def to_pandas(self):
        import pandas as pd

        return pd.DataFrame([{**asdict(r), "sparsity": r.sparsity} for r in self.layers])

    def __str__(self) -> str:
        rows = [("layer", "kind", "params", "nonzeros", "sparsity")]
        for r in self.layers:
            rows.append((r.name, r.kind, f"{r.params:,}", f"{r.nonzeros:,}", f"{r.sparsity:6.1%}"))
        rows.append(("total", "", f"{self.params:,}", f"{self.nonzeros:,}", f"{self.sparsity:6.1%}"))
        lines = table_lines(rows, right=range(2, 5))
        lines.insert(1, "-" * len(lines[0]))
        lines.insert(len(lines) - 1, "-" * len(lines[0]))
        out = "\n".join(lines)
        out += f"\nall parameters: {self.model_params:,}; steps applied: {self.steps}"
        start = "dense"
        if self.start_sparsity >= 0.05:
            start = "start"
            out += f"\nthe model arrived with {self.start_sparsity:.0%} of its target weights at zero (entry 0 is not dense)"
        if self.dense and self.now:
            name = self.dense.get("metric_name", "metric")
            out += f"\n{name}: {start} {self.dense['metric']:.4f} -> now {self.now['metric']:.4f}"
            out += f" (delta {self.now['metric'] - self.dense['metric']:+.4f}); loss {self.dense['loss']:.4f} -> {self.now['loss']:.4f}"
        return out

    __repr__ = __str__


def layer_reports(model: nn.Module, targets: Targets) -> tuple[LayerReport, ...]:
    rows = []
    with torch.no_grad():
        for t in targets:
            if t.tied_to:
                continue
            ps = [model.get_parameter(n) for n in t.param_names()]
            rows.append(LayerReport(t.name, t.kind, sum(p.numel() for p in ps), sum(count_nonzero(p) for p in ps)))
    return tuple(rows)


def target_sparsity(model: nn.Module, targets: Targets) -> float:
    """Share of the targets' prunable weights that are zero: `Report.sparsity` without the rest of the report."""
    rows = layer_reports(model, targets)
    params = sum(r.params for r in rows)
    return 1.0 - sum(r.nonzeros for r in rows) / params if params else 0.0
