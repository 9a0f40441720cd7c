"""What `recommend` returns: ranked `Row`s in a `Recommendation`, with its table."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from .._text import table_lines
from ..plan import Plan
from .candidates import RecommendationError


@dataclass(frozen=True)
class Row:
    """One ranked strategy, measured on the bench's model.

    `ratio`: the strategy's knob (share of weights / units / blocks; for sensitivity allocation the share of weights
    or FLOPs asked for); `plan`: apply it with ``bench.apply(row.plan)``, then fine-tune `finetune_epochs` epochs if
    any (`apply_row` does both). `metric`: the bench's metric measured after pruning; `drop`: how much worse than
    now (positive = worse); `predicted_loss`: the loss change a first-order Taylor estimate from one gradient pass
    predicted. `size_ratio`: parameters now / parameters kept (unmasked); `flops_kept`: effective FLOPs share.
    `speedup`: measured, the compiled model vs the masked dense one on `device` (None: not measured); `size`: bytes
    of the chosen compiled module / bytes of the model now. `accelerated_flops`: share of the FLOPs removed in a
    form a kernel on the device skips (ranks latency where speed cannot be measured). `shortfall`: how far from the
    budget (0 when met: the drop over the limit, or the size ratio missing). `measured`: per backend tried, its
    speed-up, bytes and why it was not usable.
    """

    rank: int
    strategy: str
    name: str
    family: str
    granularity: str
    criterion: str
    allocation: str
    timing: str
    backend: str
    ratio: float
    plan: Plan
    metric: float
    drop: float
    predicted_loss: float | None
    robust_accuracy: float | None
    sparsity: float
    size_ratio: float
    flops_kept: float
    speedup: float | None
    size: float | None
    accelerated_flops: float
    meets_budget: bool
    shortfall: float
    reason: str
    finetune_epochs: int = 0
    measured: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["plan"] = self.plan.to_dict()
        d["measured"] = {k: dict(v) for k, v in self.measured.items()}
        return d


@dataclass(frozen=True)
class Recommendation:
    """Ranked rows (best first; rows within budget before the others) and what they were measured against."""

    goal: str
    budget: float
    budget_text: str
    device: str
    measured_on: str | None
    metric_name: str
    metric_now: float
    robust_now: float | None
    params: int
    bytes_now: int
    rows: tuple[Row, ...]
    met: bool
    notes: tuple[str, ...]
    skipped: dict[str, str]
    seconds: float
    model: str = ""

    @property
    def best(self) -> Row:
        """The first row: the best within budget or, when `met` is False, the closest to it."""
        if not self.rows:
            raise RecommendationError(f"no strategy could be evaluated on this model: {self.skipped}")
        return self.rows[0]

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "rows"}
        d["notes"] = list(self.notes)
        d["rows"] = [r.to_dict() for r in self.rows]
        return d

    def to_pandas(self):
        import pandas as pd

        cols = ["rank", "strategy", "timing", "backend", "ratio", "metric", "drop", "predicted_loss", "speedup"]
        cols += ["size", "size_ratio", "flops_kept", "robust_accuracy", "meets_budget", "reason"]
        return pd.DataFrame([{c: getattr(r, c) for c in cols} for r in self.rows])

    def table(self) -> str:
        acc = _is_accuracy(self.metric_name)
        val = (lambda v: f"{v:.1%}") if acc else (lambda v: f"{v:.4f}")
        head = ["#", "strategy", "timing", "ratio", "backend", self.metric_name, "change", "Taylor Δloss"]
        head += ["speed-up", "size", "params", "FLOPs"] + (["FGSM acc"] if self.goal == "robustness" else [])
        lines = [[*head, "budget"]]
        for r in self.rows:
            line = [str(r.rank), r.strategy, r.timing, f"{r.ratio:.0%}", r.backend, val(r.metric)]
            line += [f"{-100 * r.drop:+.1f} pt" if acc else f"{-r.drop:+.4f}"]
            line += ["-" if r.predicted_loss is None else f"{r.predicted_loss:+.3f}"]
            line += ["n/a" if r.speedup is None else f"{r.speedup:.2f}x", "-" if r.size is None else f"{r.size:.0%}"]
            line += [f"{1 / r.size_ratio:.0%}", f"{r.flops_kept:.0%}"]
            if self.goal == "robustness":
                line.append("-" if r.robust_accuracy is None else f"{r.robust_accuracy:.1%}")
            lines.append([*line, "ok" if r.meets_budget else "OVER"])
        speed = f"speed measured on {self.measured_on}" if self.measured_on else "speed not measured"
        out = [
            f"recommend goal={self.goal!r}, budget: {self.budget_text}; device={self.device} ({speed}); "
            f"{self.model}: {self.metric_name} now {val(self.metric_now)}; {self.seconds:.1f} s"
        ]
        out += table_lines(lines)
        out += [f"{r.rank}. {r.reason}" for r in self.rows]
        out += [f"note: {n}" for n in self.notes]
        return "\n".join(out)

    def __str__(self) -> str:
        return self.table()

    def __repr__(self) -> str:
        return f"Recommendation(\n{self.table()}\n)"


def _is_accuracy(name: str) -> bool:
    return "accuracy" in name


def _budget_text(goal: str, budget: float, metric_name: str) -> str:
    if goal in ("latency", "size"):
        if _is_accuracy(metric_name):
            return f"at most {100 * budget:.1f} points of {metric_name} lost"
        return f"{metric_name} at most {budget:g} worse"
    return f"at least {budget:g}x fewer parameters (at most {1 / budget:.0%} kept)"
