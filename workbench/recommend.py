"""Which pruning should I use? `recommend` ranks pruning strategies on *this* model, from measurements.

Each candidate strategy is a granularity x criterion x allocation (x timing, x backend):

- ``global-magnitude``: single weights, one magnitude threshold over all layers;
- ``allocated-weight``: single weights, per-layer ratios chosen from this model's sensitivity estimate;
- ``structured-l1``: whole filters / neurons / heads / LSTM units (L1), the same share in every layer;
- ``allocated-structured``: whole channels, per-layer ratios chosen from the sensitivity estimate (FLOPs budget);
- ``2:4``: N:M semi-structured (2 of every 4 weights), the pattern NVIDIA sparse tensor cores accelerate;
- ``block4x4``: 4x4 blocks of weights.

For each one the largest ratio (efficiency goals) or the smallest ratio (quality goals) that meets the budget is
found by evaluating pruned *structural clones* of the live model (they share every tensor but the masked ones, so
the model is never written to). The masks at that ratio are compiled by the sparse core on a copy
(`workbench.sparse.compile`: ``shrink`` for structured strategies, ``csr`` for the others; ``semi_structured`` /
``bsr`` too on CUDA), and every compiled model and the masked dense one are timed side by side on one batch,
interleaved: on CPU in process CPU time on one thread (other programs on a shared machine do not distort it;
``timer="wall"`` for wall-clock), on CUDA in wall-clock time. With ``finetune=N`` the two most promising strategies
are also fine-tuned for N epochs on a copy of the model (at higher ratios for efficiency goals): the "timing"
dimension, one-shot vs pruning then fine-tuning. Speed-ups within 0.1x of each other count as equal (timing noise);
then the smaller accuracy drop wins.

Goals and what `budget` means:

==============  ===============================================  ============================================
goal            ranks by                                         budget (default)
==============  ===============================================  ============================================
``latency``     measured speed-up on `device`                    max metric drop, in the metric's units (0.01:
                                                                 one point of accuracy)
``size``        measured bytes of the compiled model             max metric drop (0.01)
``accuracy``    measured metric after pruning                    min size ratio: dense parameters / parameters
                                                                 kept (2.0: keep at most half)
``robustness``  accuracy under FGSM at eps 0.1 after pruning     min size ratio (2.0)
==============  ===============================================  ============================================

A budget that no strategy meets is not an error: every row is flagged (``meets_budget=False``), the rows are
ranked by how close they come, `Recommendation.met` is False, the first note says which strategy is closest and by
how much, and a `WorkbenchWarning` is issued. ``device="cuda"`` without a GPU is not an error either: speed cannot
be measured, the notes say so, and the latency ranking uses the FLOPs a CUDA kernel can skip instead.

>>> import torch, workbench as wb
>>> torch.manual_seed(0) and None
>>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 3))
>>> data = [(torch.rand(64, 1, 4, 4), torch.randint(0, 3, (64,)))]
>>> rec = wb.recommend(wb.Workbench(model, data), goal="size", budget=0.05, strategies=["structured-l1"], repeats=1)
>>> rec.best.strategy, rec.best.plan.layers["1"].granularity
('structured L1', 'neuron')
"""

from __future__ import annotations

import copy
import math
import statistics
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch
from torch import nn

from .errors import GranularityError, PlanError, WorkbenchError, WorkbenchWarning, suggest
from .plan import LayerPlan, Plan

__all__ = [
    "GOALS",
    "STRATEGIES",
    "Recommendation",
    "RecommendationError",
    "Row",
    "Strategy",
    "apply_row",
    "available_strategies",
    "guide_markdown",
    "recommend",
]

GOALS = ("latency", "size", "accuracy", "robustness")
DEFAULT_BUDGET = {"latency": 0.01, "size": 0.01, "accuracy": 2.0, "robustness": 2.0}
STRUCTURED = ("filter", "neuron", "head", "lstm-unit")  # one per target kind, in this order
UNITS = {"filter": "filters", "neuron": "neurons", "head": "heads", "lstm-unit": "LSTM units"}
FGSM_EPS = 0.1
FINETUNE_STRATEGIES = 2  # how many strategies fine-tuning is measured for
FINETUNE_RATIOS = 2  # and at how many ratios each (efficiency goals)


class RecommendationError(WorkbenchError, ValueError):
    """`recommend` cannot run as asked: unknown goal, strategy or device, or a budget outside its range."""


@dataclass(frozen=True)
class Strategy:
    """A candidate: `family` ``"unstructured"``, ``"structured"``, ``"N:M"`` or ``"block"``; `allocation`
    ``"global"``, ``"uniform"`` or ``"sensitivity"``; `grid` the ratios tried (for ``"sensitivity"``: the share of
    weights, or of FLOPs for structured, to remove); `rule` when to reach for it, in one line."""

    name: str
    label: str
    family: str
    granularity: str
    criterion: str
    allocation: str
    grid: tuple[float, ...]
    rule: str


_W = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
_U = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
STRATEGIES: dict[str, Strategy] = {
    s[0]: Strategy(*s)
    for s in (
        ("global-magnitude", "global magnitude", "unstructured", "weight", "magnitude", "global", _W,
         "most weights removed per point of accuracy; needs a sparse format to get smaller, dense kernels gain no speed"),
        ("allocated-weight", "sensitivity-allocated weights", "unstructured", "weight", "magnitude", "sensitivity", _W,
         "per-layer ratios from the model's own sensitivity estimate: spares the layers that hurt most"),
        ("structured-l1", "structured L1", "structured", "filter/neuron/head/lstm-unit", "l1", "uniform", _U,
         "whole filters/neurons removed (shrink): smaller dense layers, faster on any device; fine-tune after"),
        ("allocated-structured", "sensitivity-allocated channels", "structured", "filter/neuron", "l1", "sensitivity",
         _U[:7], "whole channels, per-layer ratios from the sensitivity estimate for a FLOPs budget; fine-tune after"),
        ("2:4", "2:4 semi-structured", "N:M", "2:4", "magnitude", "uniform", (0.5,),
         "2 of every 4 weights: the pattern NVIDIA sparse tensor cores (Ampere+, fp16/bf16) run faster"),
        ("block4x4", "4x4 blocks", "block", "block4x4", "magnitude", "uniform", _U[1:],
         "tiles of weights: block-sparse kernels (BSR on CUDA) at high block sparsity"),
    )
}  # fmt: skip


def available_strategies() -> list[str]:
    """Names `recommend(strategies=...)` accepts.

    >>> available_strategies()[:2]
    ['global-magnitude', 'allocated-weight']
    """
    return list(STRATEGIES)


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
        widths = [max(len(x[i]) for x in lines) for i in range(len(lines[0]))]
        speed = f"speed measured on {self.measured_on}" if self.measured_on else "speed not measured"
        out = [
            f"recommend goal={self.goal!r}, budget: {self.budget_text}; device={self.device} ({speed}); "
            f"{self.model}: {self.metric_name} now {val(self.metric_now)}; {self.seconds:.1f} s"
        ]
        out += ["  ".join(c.ljust(w) for c, w in zip(x, widths)).rstrip() for x in lines]
        out += [f"{r.rank}. {r.reason}" for r in self.rows]
        out += [f"note: {n}" for n in self.notes]
        return "\n".join(out)

    def __str__(self) -> str:
        return self.table()

    def __repr__(self) -> str:
        return f"Recommendation(\n{self.table()}\n)"


def _is_accuracy(name: str) -> bool:
    return "accuracy" in name


def _nbytes(module: nn.Module) -> int:
    return sum(v.numel() * v.element_size() for v in module.state_dict().values() if isinstance(v, torch.Tensor))


class _Masked:
    """What `workbench.sparse.compile` reads from a Workbench, for `model` with `masks` (full names) applied."""

    def __init__(self, bench, model: nn.Module, masks: dict[str, torch.Tensor]):
        self.model, self.groups, self.example_inputs, self.data = model, bench.groups, bench.example_inputs, bench.data
        self.history: tuple = ()
        self.store = self
        self._masks = masks

    def masks(self) -> dict[str, torch.Tensor]:
        return self._masks


class _Profiled:
    """The bench, with `profile()` answered from one measurement (allocation asks for it on every call)."""

    def __init__(self, bench, prof):
        self._bench, self._prof = bench, prof

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bench, name)

    def profile(self, **kwargs: Any):
        return self._prof


@dataclass
class _Cand:
    """A strategy at one ratio, measured; becomes a `Row` once compiled and timed."""

    strategy: Strategy
    gran: str
    epochs: int
    ratio: float
    plan: Plan
    masks: dict[str, torch.Tensor]
    module: nn.Module
    value: float
    robust: float | None
    counts: dict[str, float]
    compiled: dict[str, dict[str, Any]] = field(default_factory=dict)


class _Ctx:
    """What one `recommend` call measures once and shares between strategies."""

    def __init__(self, bench, goal: str, budget: float, device: torch.device, batch_size: int):
        from .analysis._graph import clone_with
        from .analysis.sensitivity import _grads
        from .evaluate import batches, eval_mode, model_device
        from .masks.select import DEFAULT_KINDS

        self.bench, self.goal, self.budget, self.device, self.batch_size = bench, goal, budget, device, batch_size
        self.model = model = bench.model
        self.higher = bench.metric != "loss"
        now = bench.evaluate()
        self.metric_now = float(now["metric"])
        self.metric_name = str(now.get("metric_name") or bench.metric)
        self.params = sum(p.numel() for p in model.parameters())
        self.bytes_now = _nbytes(model)
        self.current = bench.store.masks()
        self.weights = {n for t in bench.targets if t.kind in DEFAULT_KINDS and not t.tied_to for n in t.param_names()}
        self.n_weights = sum(model.get_parameter(n).numel() for n in self.weights)
        self.prof = bench.profile(batch_size=batch_size, repeats=1, per_layer=False)
        self.profiled = _Profiled(bench, self.prof)
        self.flops = float(self.prof.total_flops_dense)
        self.flops_per_weight: dict[str, float] = {}
        self.cuda_24: dict[str, float] = {}  # Linear weights whose shapes fit the 2:4 kernels -> their FLOPs
        for i, name in enumerate(self.prof.layers):
            for p in bench.targets[name].param_names():
                self.flops_per_weight[p] = self.prof.flops_dense[i] / max(1, self.prof.params[i])
            mod = model.get_submodule(name)
            if isinstance(mod, nn.Linear) and mod.out_features % 32 == 0 and mod.in_features % 64 == 0:
                self.cuda_24[f"{name}.weight"] = float(self.prof.flops_dense[i])
        self.sens: dict[str, Any] = {}
        # one gradient pass: the first-order Taylor prediction of every candidate's loss change
        names = [n for n, p in model.named_parameters() if p.requires_grad and p.is_floating_point()]
        params = [model.get_parameter(n) for n in names]
        grads = [torch.zeros_like(p, dtype=torch.float64) for p in params]
        count = 0
        with eval_mode(model), torch.enable_grad():
            for x, y in batches(bench.calib, model_device(model)):
                for acc, g in zip(grads, _grads(model, params, x, y)):  # autograd.grad: no .grad is written
                    acc += g
                count += y.shape[0]
        self.taylor = {n: -g / max(count, 1) * p.detach().double() for n, g, p in zip(names, grads, params)}
        self.robust = None
        self.robust_now = None
        if goal == "robustness":
            from .analysis.robustness import robust_accuracy

            self.robust = robust_accuracy("fgsm", FGSM_EPS, seed=bench.seed)
            self.robust_now = float(self.robust(clone_with(model, {}), bench.data))

    def masks(self, plan: Plan) -> dict[str, torch.Tensor]:
        return {**self.current, **self.bench.preview(plan).masks}

    def clone(self, masks: dict[str, torch.Tensor]) -> nn.Module:
        """A structural clone of the live model sharing every tensor but the masked ones (the model is not written)."""
        from .analysis._graph import clone_with, masked_params

        return clone_with(self.model, masked_params(self.model, masks))

    def metric(self, module: nn.Module) -> float:
        from .evaluate import evaluate

        return float(evaluate(module, self.bench.data, self.bench.metric)["metric"])

    def drop(self, value: float) -> float:
        return self.metric_now - value if self.higher else value - self.metric_now

    def counts(self, masks: dict[str, torch.Tensor]) -> dict[str, float]:
        removed = sum(int(m.sum()) for m in masks.values())
        removed_w = sum(int(m.sum()) for n, m in masks.items() if n in self.weights)
        flops = self.flops - sum(float(m.sum()) * self.flops_per_weight.get(n, 0.0) for n, m in masks.items())
        new = {n: m if n not in self.current else m & ~self.current[n] for n, m in masks.items()}
        pred = sum(float(self.taylor[n][m.to(self.taylor[n].device)].sum()) for n, m in new.items() if n in self.taylor)
        return {
            "size_ratio": self.params / max(1, self.params - removed),
            "sparsity": removed_w / max(1, self.n_weights),
            "flops_kept": max(0.0, flops / self.flops) if self.flops else 1.0,
            "predicted_loss": pred,
        }

    def cand(self, s: Strategy, gran: str, epochs: int, ratio: float, plan: Plan, masks, module, value) -> _Cand:
        robust = float(self.robust(module, self.bench.data)) if self.robust is not None else None
        return _Cand(s, gran, epochs, ratio, plan, masks, module, value, robust, self.counts(masks))


# plans per strategy ---------------------------------------------------------------------------------------------
def _structured_rows(bench, criterion: str, granularities: Sequence[str] = STRUCTURED) -> list[tuple[str, tuple]]:
    """(granularity, coupled members) of every row a structured plan can cover, one granularity per target."""
    from .analysis.sensitivity import rows_for

    out, seen = [], set()
    for g in granularities:
        try:
            rows = rows_for(bench, g, criterion)
        except (GranularityError, PlanError):
            continue
        for r in rows:
            if not seen & set(r.members):
                seen |= set(r.members)
                out.append((g, r.members))
    if not out:
        raise PlanError(f"no layer of this model can lose whole {'/'.join(UNITS[g] for g in granularities)}")
    return out


def _plan_fn(ctx: _Ctx, s: Strategy) -> tuple[Callable[[float], Plan], str]:
    """ratio -> Plan for strategy `s` on this model (PlanError if it does not apply), and its granularity here."""
    bench = ctx.bench
    if s.family == "unstructured" and s.allocation == "global":
        return (lambda r: Plan.global_(r, s.criterion)), "weight"
    if s.family in ("N:M", "block"):
        ctx.masks(Plan.uniform(s.grid[0], s.granularity, s.criterion))  # raises if no layer supports it
        return (lambda r: Plan.uniform(r, s.granularity, s.criterion)), s.granularity
    if s.family == "structured" and s.allocation == "uniform":
        rows = _structured_rows(bench, s.criterion)
        gran = "+".join(dict.fromkeys(g for g, _ in rows))
        return (lambda r: Plan({m: LayerPlan(r, g, s.criterion) for g, ms in rows for m in ms})), gran
    from .analysis.allocate import allocate
    from .analysis.sensitivity import sensitivity

    target, gran = "sparsity", "weight"
    if s.family == "structured":  # allocate over the granularity covering the most FLOPs
        target, best = "flops", -1.0
        for g in ("filter", "neuron"):
            try:
                rows = _structured_rows(bench, s.criterion, (g,))
            except PlanError:
                continue
            params = [p for _, ms in rows for m in ms for p in bench.targets[m].param_names()]
            fl = sum(ctx.flops_per_weight.get(p, 0.0) * ctx.model.get_parameter(p).numel() for p in params)
            if fl > best:
                best, gran = fl, g
        if best < 0:
            raise PlanError("no layer of this model can lose whole filters or neurons")
    if gran not in ctx.sens:
        grid = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
        ctx.sens[gran] = sensitivity(bench, grid, gran, s.criterion, mode="estimate", progress=False)
    sens = ctx.sens[gran]
    return (lambda r: allocate(ctx.profiled, r, target, gran, s.criterion, sens).plan), gran


def _search(ctx: _Ctx, s: Strategy, plan_of: Callable[[float], Plan], gran: str) -> _Cand | None:
    """Efficiency goals: the largest grid ratio within the drop budget (ascending, stopping at the first one over
    it); quality goals: the smallest ratio reaching the size ratio (bisection on the masks, one evaluation).
    When the budget is out of reach: the closest point, flagged by `_rows`."""

    def at(r: float):
        try:
            return ctx.masks(plan_of(r))
        except PlanError:  # e.g. an allocation out of reach
            return None

    if ctx.goal in ("latency", "size"):
        best = None
        for r in s.grid:
            masks = at(r)
            if masks is None:
                break
            clone = ctx.clone(masks)
            value = ctx.metric(clone)
            if best is None or ctx.drop(value) <= ctx.budget + 1e-12:
                best = (r, masks, clone, value)
            if ctx.drop(value) > ctx.budget + 1e-12:
                break
        return None if best is None else ctx.cand(s, gran, 0, best[0], plan_of(best[0]), *best[1:])
    resolved = [(r, m) for r, m in ((r, at(r)) for r in reversed(s.grid)) if m is not None][:1]
    if not resolved:
        return None
    hi, m_hi = resolved[0]
    lo = s.grid[0]
    if ctx.counts(m_hi)["size_ratio"] >= ctx.budget and lo < hi:
        m_lo = at(lo)
        if m_lo is not None and ctx.counts(m_lo)["size_ratio"] >= ctx.budget:
            hi, m_hi = lo, m_lo
        for _ in range(12):
            if hi - lo < 2e-3:
                break
            mid = (lo + hi) / 2
            m = at(mid)
            if m is not None and ctx.counts(m)["size_ratio"] >= ctx.budget:
                hi, m_hi = mid, m
            else:
                lo = mid
    clone = ctx.clone(m_hi)
    return ctx.cand(s, gran, 0, hi, plan_of(hi), m_hi, clone, ctx.metric(clone))


def _finetune(ctx: _Ctx, c: _Cand, plan_of, epochs: int) -> list[_Cand]:
    """Fine-tuned variants of a one-shot candidate, each on a copy of the model: at higher ratios for efficiency
    goals (as long as they stay within budget), at the same ratio for quality goals."""
    from .bench import Workbench

    b, s = ctx.bench, c.strategy
    if ctx.goal in ("latency", "size"):
        within = ctx.drop(c.value) <= ctx.budget + 1e-12
        ratios = [g for g in s.grid if (g > c.ratio if within else g >= c.ratio)][:FINETUNE_RATIOS]
    else:
        ratios = [c.ratio]
    out = []
    for r in ratios:
        try:
            plan = c.plan if r == c.ratio else plan_of(r)
            masks = c.masks if r == c.ratio else ctx.masks(plan)
        except PlanError:
            break
        model = copy.deepcopy(ctx.model)
        cb = Workbench(
            model, b.data, b.metric, train=b.train, calib=b.calib, example_inputs=b.example_inputs, seed=b.seed
        )
        cb.apply_masks(masks, label="candidate", evaluate=False)
        cb.finetune(epochs, progress=False, seed=b.seed)
        value = ctx.metric(model)
        out.append(ctx.cand(s, c.gran, epochs, r, plan, masks, model, value))
        if ctx.goal in ("latency", "size") and ctx.drop(value) > ctx.budget + 1e-12:
            break
    return out


def _potential(goal: str, device: torch.device, budget: float, higher: bool):
    """Which one-shot candidates fine-tuning is measured for first: those with the most to gain for the goal, also
    when over the drop budget. Latency: structured strategies (what they remove, dense kernels skip), then 2:4 on
    CUDA; size: the fewest parameters kept; quality goals: the most accurate at the size ratio."""

    def key(c: _Cand):
        if goal == "latency":
            tier = (
                0
                if c.strategy.family == "structured"
                else 1
                if (c.strategy.family, device.type) == ("N:M", "cuda")
                else 2
            )
            return (tier, c.counts["flops_kept"])
        if goal == "size":
            return (c.strategy.family != "structured", -c.counts["size_ratio"])
        return (c.counts["size_ratio"] < budget, -c.value if higher else c.value)

    return key


# compile and time ------------------------------------------------------------------------------------------------
def _backends(s: Strategy, device: torch.device) -> list[tuple[str, torch.dtype | None]]:
    if s.family == "structured":
        return [("shrink", None)]
    if device.type == "cuda" and s.family == "N:M":
        return [("semi_structured", torch.float16), ("csr", None)]
    if device.type == "cuda" and s.family == "block":
        return [("bsr", None), ("csr", None)]
    return [("csr", None)]


def _compile(ctx: _Ctx, c: _Cand, device: torch.device) -> None:
    """Compile `c` with each backend its strategy can use (on copies): module, bytes, or why it could not."""
    from .sparse import CompileError, compile

    for backend, dtype in _backends(c.strategy, device):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fast, rep = compile(
                    _Masked(ctx.bench, c.module, c.masks), backend, device, ctx.batch_size, dtype=dtype, repeats=1
                )
        except CompileError as e:
            c.compiled[backend] = {"module": None, "bytes": None, "dtype": dtype, "note": str(e).split(". ")[0]}
            continue
        note = (
            "nothing to shrink: no backend removes these units yet"
            if backend == "shrink" and not rep.removed_channels
            else ""
        )
        nbytes = None if dtype is not None else _nbytes(fast)  # fp16 bytes are not comparable with fp32 ones
        c.compiled[backend] = {"module": fast, "bytes": nbytes, "dtype": dtype, "note": note}


def _cpu_ms(fns: dict[str, Callable[[], Any]], rounds: int, min_block_s: float = 0.004) -> dict[str, float]:
    """Median CPU time (ms of process time) per call of each callable, in interleaved rounds on one thread: other
    programs on a shared machine slow wall-clock timings unevenly, but do not add to this process's CPU time."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        sizes = {}
        for k, fn in fns.items():
            fn()
            n = 1
            while True:
                t0 = time.process_time()
                for _ in range(n):
                    fn()
                if time.process_time() - t0 >= min_block_s or n >= 1 << 12:
                    break
                n *= 2
            sizes[k] = n
        samples: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(rounds):
            for k, fn in fns.items():
                t0 = time.process_time()
                for _ in range(sizes[k]):
                    fn()
                samples[k].append((time.process_time() - t0) / sizes[k] * 1e3)
    finally:
        torch.set_num_threads(threads)
    return {k: statistics.median(v) for k, v in samples.items()}


def _time(ctx: _Ctx, cands: list[_Cand], device: torch.device, repeats: int, timer: str) -> None:
    """One interleaved timing of every compiled module and the masked dense model (per dtype): speed-ups in place."""
    from .sparse import compile
    from .sparse.compiler import _batch, _cast
    from .sparse.timing import measure

    xs0 = _batch(ctx.bench.example_inputs, ctx.bench.data, ctx.batch_size)
    fns: dict[str, Callable[[], Any]] = {}
    refs: dict[Any, str] = {}
    for dtype in {e["dtype"] for c in cands for e in c.compiled.values() if e["module"] is not None}:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dense, _ = compile(
                _Masked(ctx.bench, ctx.model, ctx.current), "dense", device, ctx.batch_size, dtype=dtype, repeats=1
            )
        xs = _cast(xs0, device, dtype)
        refs[dtype] = f"dense/{dtype}"
        fns[refs[dtype]] = lambda m=dense, xs=xs: m(*xs)
    for i, c in enumerate(cands):
        for backend, e in c.compiled.items():
            if e["module"] is not None:
                xs = _cast(xs0, device, e["dtype"])
                fns[f"{i}/{backend}"] = lambda m=e["module"], xs=xs: m(*xs)
    if not fns:
        return
    with torch.inference_mode():
        if device.type == "cpu" and timer == "cpu":
            ms = _cpu_ms(fns, repeats)
        else:
            ms = measure(fns, repeats=repeats, device=device)
    for i, c in enumerate(cands):
        for backend, e in c.compiled.items():
            if e["module"] is not None:
                e["ms"] = ms[f"{i}/{backend}"]
                e["speedup"] = ms[refs[e["dtype"]]] / e["ms"]


def _row(ctx: _Ctx, c: _Cand, speed: bool) -> Row:
    """The backend the goal prefers (fastest, or smallest for `size` and where speed is not measured; the masked
    dense model when no compiled one is better: 1.00x, the bytes of the model now), and the budget check."""
    backend, sp, size = "dense", (1.0 if speed else None), 1.0
    by_size = ctx.goal == "size" or not speed
    measured = {}
    for name, e in c.compiled.items():
        s = e.get("speedup") if speed else None
        b = None if e["bytes"] is None else e["bytes"] / ctx.bytes_now
        measured[name] = {"speedup": s, "size": b, "note": e["note"]}
        if e["module"] is None or e["note"]:
            continue
        if by_size:
            better = b is not None and (b < size - 1e-9 or name == "shrink")
        else:  # sparse formats must gain clearly (timing noise); shrink is smaller as well
            better = s is not None and s > max(sp or 1.0, 1.0 if name == "shrink" else 1.05)
        if better:
            backend, sp, size = name, s, b
    drop = ctx.drop(c.value)
    if ctx.goal in ("latency", "size"):
        shortfall = max(0.0, drop - ctx.budget)
        if shortfall <= 1e-12:
            shortfall = 0.0
    else:
        shortfall = max(0.0, ctx.budget - c.counts["size_ratio"])
    s = c.strategy
    accel = 0.0
    if s.family == "structured" and backend == "shrink":
        accel = 1.0 - c.counts["flops_kept"]
    elif s.family == "N:M" and ctx.device.type == "cuda":
        accel = 0.5 * sum(ctx.cuda_24.get(n, 0.0) for n in c.masks) / max(ctx.flops, 1.0)
    return Row(
        rank=0,
        strategy=s.label,
        name=s.name,
        family=s.family,
        granularity=c.gran,
        criterion=s.criterion,
        allocation=s.allocation,
        timing=f"+ fine-tune {c.epochs} ep" if c.epochs else "one-shot",
        backend=backend,
        ratio=float(c.ratio),
        plan=c.plan,
        metric=float(c.value),
        drop=float(drop),
        predicted_loss=c.counts["predicted_loss"],
        robust_accuracy=c.robust,
        sparsity=c.counts["sparsity"],
        size_ratio=c.counts["size_ratio"],
        flops_kept=c.counts["flops_kept"],
        speedup=sp,
        size=size,
        accelerated_flops=accel,
        meets_budget=shortfall == 0.0,
        shortfall=float(shortfall),
        reason="",
        finetune_epochs=c.epochs,
        measured=measured,
    )


def _key(goal: str, speed: bool):
    """Rows within budget first, by the goal; speed-ups compare rounded to 0.1x (timing noise), then the smaller
    drop and the higher ratio win. Rows over budget follow, closest first."""

    def key(r: Row):
        if not r.meets_budget:
            return (1, r.shortfall, r.drop, 0.0)
        if goal == "latency":
            fast = r.speedup if speed and r.speedup is not None else 1.0 + r.accelerated_flops
            return (0, -round(fast, 1), r.drop, -r.ratio)
        if goal == "size":
            return (0, round(r.size if r.size is not None else 1.0, 2), r.drop, -r.ratio)
        if goal == "accuracy":
            return (0, r.drop, -(r.speedup or 1.0), 0.0)
        return (0, -(r.robust_accuracy or 0.0), r.drop, 0.0)

    return key


# reasons ----------------------------------------------------------------------------------------------------------
def _knob(r: Row) -> str:
    if r.family == "N:M":
        return "2 of every 4 weights kept"
    if r.allocation == "sensitivity":
        what = "FLOPs" if r.family == "structured" else "weights"
        return f"{r.ratio:.0%} of the {what} (per-layer ratios from this model's sensitivity)"
    if r.family == "structured":
        return f"{r.ratio:.0%} of the {'/'.join(UNITS.get(g, g) for g in r.granularity.split('+'))}"
    return f"{r.ratio:.0%} of the {'4x4 blocks' if r.family == 'block' else 'weights'}"


def _speed_text(r: Row, speed: bool, where: str) -> str:
    if not speed:
        if r.family == "structured" and r.backend == "shrink":
            return f"{1 - r.flops_kept:.0%} of the FLOPs physically removed (shrink), which a GPU skips too"
        if r.family == "N:M" and r.accelerated_flops > 0:
            return f"2:4 sparse tensor cores can skip {r.accelerated_flops:.0%} of the FLOPs (not measured)"
        if r.family == "structured":
            return "nothing a kernel can skip (no backend removes these units yet)"
        return "no CUDA kernel skips scattered zeros like these (not measured)"
    if r.backend != "dense" and r.speedup is not None:
        return f"measured {r.speedup:.2f}x on {where} ({r.backend})"
    alt = next(((k, v) for k, v in r.measured.items() if v["speedup"] is not None), None)
    if alt is not None and alt[1]["note"]:
        text = f"no measured speed on {where} ({alt[1]['note']})"
    elif alt is not None:
        text = f"no measured speed on {where} ({alt[0]} {alt[1]['speedup']:.2f}x, so it stays dense)"
    else:
        notes = [v["note"] for v in r.measured.values() if v["note"]]
        text = f"no measured speed on {where}" + (f" ({notes[0]})" if notes else "")
    if r.family == "N:M" and where == "CPU":
        text += "; 2:4 pays off on NVIDIA sparse tensor cores (device='cuda')"
    return text


def _reasons(rows: list[Row], ctx: _Ctx, speed: bool, where: str) -> list[Row]:
    acc = _is_accuracy(ctx.metric_name)

    def cost(r: Row) -> str:
        if acc:
            return f"{-100 * r.drop:+.1f} points of accuracy ({ctx.metric_now:.1%} -> {r.metric:.1%})"
        return f"{ctx.metric_name} {ctx.metric_now:.4f} -> {r.metric:.4f}"

    fast_other = any(x.family != "structured" and (x.speedup or 0) > 1.05 for x in rows if x.meets_budget)
    out, said_only = [], False
    for i, r in enumerate(rows):
        knob, speed_txt = _knob(r), _speed_text(r, speed, where)
        tuned = f" after {r.finetune_epochs} epoch(s) of fine-tuning" if r.finetune_epochs else ""
        if not r.meets_budget:
            if ctx.goal in ("latency", "size"):
                over = f"{100 * r.shortfall:.1f} points" if acc else f"{r.shortfall:.4f}"
                text = f"{r.strategy}: over budget by {over}: {knob} costs {cost(r)}{tuned}"
            else:
                text = (
                    f"{r.strategy}: over budget: reaches only {r.size_ratio:.2f}x fewer parameters of the "
                    f"{ctx.budget:g}x asked, with {knob}, at {cost(r)}{tuned}"
                )
        elif ctx.goal == "latency":
            fast = speed and (r.speedup or 0) > 1.05
            only = fast and r.family == "structured" and not fast_other and not said_only
            said_only = said_only or only
            lead = (
                "only structured removal gave measured speed: "
                if only
                else "fastest within budget: "
                if fast and i == 0
                else "nothing within budget gave measured speed; this loses least: "
                if i == 0 and speed
                else ""
            )
            text = f"{r.strategy}: {lead}{speed_txt} at {knob}, for {cost(r)}{tuned}"
        elif ctx.goal == "size":
            alt = r.measured.get("csr") or {}
            size_txt = f"{r.size:.0%} of the bytes as {r.backend}" if r.size is not None else "size not measured"
            if r.backend == "dense" and (alt.get("size") or 0) > 1:
                size_txt += f" (CSR would take {alt['size']:.0%}: its indices cost more than the zeros save)"
            lead = "smallest within budget: " if i == 0 else ""
            text = (
                f"{r.strategy}: {lead}{size_txt}, {1 / r.size_ratio:.0%} of the parameters kept, at {knob}, "
                f"for {cost(r)}{tuned}"
            )
        elif ctx.goal == "accuracy":
            lead = "least accuracy lost: " if i == 0 else ""
            text = f"{r.strategy}: {lead}{cost(r)} at {r.size_ratio:.2f}x fewer parameters ({knob}){tuned}; {speed_txt}"
        else:
            lead = "most robust: " if i == 0 else ""
            text = (
                f"{r.strategy}: {lead}FGSM (eps {FGSM_EPS:g}) accuracy {ctx.robust_now:.1%} -> "
                f"{r.robust_accuracy:.1%} and clean {cost(r)} at {r.size_ratio:.2f}x fewer parameters ({knob}){tuned}"
            )
        out.append(replace(r, rank=i + 1, reason=text + "."))
    return out


def _budget_text(goal: str, budget: float, metric_name: str) -> str:
    if goal in ("latency", "size"):
        if _is_accuracy(metric_name):
            return f"at most {100 * budget:.1f} points of {metric_name} lost"
        return f"{metric_name} at most {budget:g} worse"
    return f"at least {budget:g}x fewer parameters (at most {1 / budget:.0%} kept)"


def _check(goal: Any, budget: Any, device: Any, strategies: Any, finetune: Any, timer: Any) -> tuple[float, list[str]]:
    if goal not in GOALS:
        raise RecommendationError(
            f"unknown goal {goal!r}.{suggest(str(goal), GOALS, 'goal')} Goals: {', '.join(GOALS)}"
        )
    if device not in ("cpu", "cuda"):
        raise RecommendationError(f"device must be 'cpu' or 'cuda', got {device!r}")
    if timer not in ("cpu", "wall"):
        raise RecommendationError(
            f"timer must be 'cpu' (process time, robust on a shared machine) or 'wall', got {timer!r}"
        )
    budget = DEFAULT_BUDGET[goal] if budget is None else budget
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not math.isfinite(budget):
        raise RecommendationError(f"budget must be a finite number, got {budget!r}")
    if goal in ("latency", "size") and budget < 0:
        raise RecommendationError(
            f"for goal {goal!r} the budget is the largest metric drop you accept (0.01 = one point of accuracy), "
            f"so it must be >= 0; got {budget!r}"
        )
    if goal in ("accuracy", "robustness") and budget < 1:
        raise RecommendationError(
            f"for goal {goal!r} the budget is the size ratio you need, dense parameters / parameters kept, >= 1 "
            f"(2.0 keeps at most half); got {budget!r}"
        )
    names = (
        list(STRATEGIES) if strategies is None else [strategies] if isinstance(strategies, str) else list(strategies)
    )
    if not names:
        raise RecommendationError(f"strategies is empty; choose from {available_strategies()}")
    for n in names:
        if n not in STRATEGIES:
            hint = suggest(str(n), STRATEGIES, "strategy")
            raise RecommendationError(f"unknown strategy {n!r}.{hint} Available: {available_strategies()}")
    if isinstance(finetune, bool) or not isinstance(finetune, int) or finetune < 0:
        raise RecommendationError(f"finetune is a number of epochs >= 0, got {finetune!r}")
    return float(budget), list(dict.fromkeys(names))


def recommend(
    bench,
    goal: str = "latency",
    budget: float | None = None,
    device: str = "cpu",
    *,
    strategies: Iterable[str] | None = None,
    finetune: int = 0,
    batch_size: int = 64,
    repeats: int = 7,
    timer: str = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> Recommendation:
    """Rank pruning strategies for `bench`'s model by `goal` within `budget`, measured here; see the module
    docstring for goals, budgets and strategies. The live model is never written to: pruned variants are structural
    clones, compiled and fine-tuned ones are copies.

    `finetune`: epochs of fine-tuning measured for the two most promising strategies (0: one-shot only).
    `batch_size`, `repeats`: the batch the speed is measured at and the interleaved rounds. `timer`: on CPU,
    ``"cpu"`` times process CPU time on one thread (other programs on a shared machine do not distort it),
    ``"wall"`` wall-clock time with torch's threads (`workbench.sparse.timing.measure`); CUDA is always wall-clock.
    `progress(done, total)` is called as strategies finish."""
    budget, names = _check(goal, budget, device, strategies, finetune, timer)
    t0 = time.perf_counter()
    notes: list[str] = []
    speed = device == "cpu" or torch.cuda.is_available()
    dev = torch.device(device if speed else "cpu")
    if not speed:
        notes.append(
            "CUDA speed cannot be measured here: torch sees no CUDA device. The ranking uses the metric measured on "
            "this machine and, for latency, the share of FLOPs a CUDA kernel can skip: structured removal (shrink) "
            "everywhere, and 2:4 semi-structured (the CUDA-accelerated pattern: NVIDIA Ampere or newer, fp16/bf16, "
            "Linear layers with multiples of 32 x 64 features) half of the eligible layers' multiplies. Measure on "
            "the GPU with wb.sparse.compile(bench, backend='auto', device='cuda') before relying on it."
        )
    ctx = _Ctx(bench, goal, budget, dev if speed else torch.device("cuda"), batch_size)
    if device == "cuda":
        share = sum(ctx.cuda_24.values()) / max(ctx.flops, 1.0)
        notes.append(
            f"{len(ctx.cuda_24)} Linear layer(s) of this model fit the 2:4 kernels' shapes: {share:.0%} of its FLOPs"
        )
    total = len(names) + (FINETUNE_STRATEGIES if finetune else 0) + 1
    cands: list[_Cand] = []
    plans: dict[str, Callable[[float], Plan]] = {}
    skipped: dict[str, str] = {}
    for k, name in enumerate(names):
        s = STRATEGIES[name]
        try:
            plans[name], gran = _plan_fn(ctx, s)
            c = _search(ctx, s, plans[name], gran)
            if c is None:
                raise PlanError(f"no ratio of {s.label} can be applied to this model")
            cands.append(c)
        except (PlanError, GranularityError) as e:
            skipped[name] = str(e).split("; ")[0]
        if progress is not None:
            progress(k + 1, total)
    if finetune and cands and bench.train is None:
        notes.append("fine-tuning was not measured: the bench has no training data (Workbench(..., train=...))")
    elif finetune and cands:
        for k, c in enumerate(
            sorted(cands, key=_potential(goal, ctx.device, budget, ctx.higher))[:FINETUNE_STRATEGIES]
        ):
            tuned = _finetune(ctx, c, plans[c.strategy.name], finetune)
            if ctx.goal in ("latency", "size"):  # keep the highest ratio within budget, else the closest
                ok = [t for t in tuned if ctx.drop(t.value) <= budget + 1e-12]
                tuned = ok[-1:] or sorted(tuned, key=lambda t: ctx.drop(t.value))[:1]
            cands += tuned
            if progress is not None:
                progress(len(names) + k + 1, total)
    for c in cands:
        _compile(ctx, c, dev)
    if speed:
        _time(ctx, cands, dev, repeats, timer)
    if progress is not None:
        progress(total, total)
    rows = sorted((_row(ctx, c, speed) for c in cands), key=_key(goal, speed))
    where = "CUDA" if dev.type == "cuda" else "CPU"
    rows = _reasons(rows, ctx, speed, where)
    met = any(r.meets_budget for r in rows)
    text = _budget_text(goal, budget, ctx.metric_name)
    if rows and not met:
        b = rows[0]
        if goal in ("latency", "size"):
            by = f"{100 * b.shortfall:.1f} points" if _is_accuracy(ctx.metric_name) else f"{b.shortfall:.4f}"
        else:
            by = f"{b.shortfall:.2f}x (it reaches {b.size_ratio:.2f}x)"
        msg = f"no strategy meets the budget ({text}); the closest is {b.strategy} ({b.timing}), missing it by {by}"
        notes.insert(0, msg)
        warnings.warn(msg, WorkbenchWarning, stacklevel=2)
    if skipped:
        notes.append("not applicable here: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    return Recommendation(
        goal=goal,
        budget=budget,
        budget_text=text,
        device=device,
        measured_on=where if speed else None,
        metric_name=ctx.metric_name,
        metric_now=ctx.metric_now,
        robust_now=ctx.robust_now,
        params=ctx.params,
        bytes_now=ctx.bytes_now,
        rows=tuple(rows),
        met=met,
        notes=tuple(notes),
        skipped=skipped,
        seconds=time.perf_counter() - t0,
        model=bench.name,
    )


def apply_row(bench, row: Row, *, progress: Any = False):
    """Apply a recommended row to the live model: ``bench.apply(row.plan)``, then fine-tune `row.finetune_epochs`
    epochs if the row was measured with fine-tuning (the same seed). Returns the last history entry."""
    entry = bench.apply(row.plan, label=f"recommended: {row.strategy} {row.ratio:.0%}")
    if row.finetune_epochs:
        bench.finetune(row.finetune_epochs, progress=progress, seed=bench.seed)
        entry = bench.current
    return entry


# the README section ----------------------------------------------------------------------------------------------
_QUESTIONS = (
    ("latency", "cpu", "faster inference on a CPU"),
    ("latency", "cuda", "faster inference on an NVIDIA GPU"),
    ("size", "cpu", "a smaller model file"),
    ("accuracy", "cpu", "the most accuracy at a given size"),
    ("robustness", "cpu", "robustness to adversarial inputs"),
)


def guide_markdown(
    models: Sequence[str] | None = None,
    *,
    budgets: dict[str, float] | None = None,
    finetune: int = 0,
    repeats: int = 5,
    results: dict[tuple[str, str, str], Recommendation] | None = None,
    questions: Sequence[tuple[str, str]] | None = None,
) -> str:
    """The README's "Which pruning should I use?" section: for each question (goal and device), the strategy that
    `recommend` ranked first on the most demo models, its rule of thumb, and the measured numbers per model; then
    the conditions of the run. `models`: demo model names (default: all five); `budgets` per goal (default
    `DEFAULT_BUDGET`); `results` maps (model, goal, device) to a `Recommendation` already computed (the rest are
    computed here, a few seconds each); `questions`: (goal, device) pairs to cover (default: all five)."""
    import platform

    from .bench import Workbench
    from .demo import available, load

    models = list(models) if models is not None else available()
    budgets = {**DEFAULT_BUDGET, **(budgets or {})}
    results = dict(results or {})
    asked = [q for q in _QUESTIONS if questions is None or (q[0], q[1]) in set(questions)]
    for model_name in models:
        bench = None
        for goal, device, _ in asked:
            if (model_name, goal, device) in results:
                continue
            if bench is None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    model, data = load(model_name)
                bench = Workbench(model, data)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", WorkbenchWarning)
                results[(model_name, goal, device)] = recommend(
                    bench, goal, budgets[goal], device, finetune=finetune, repeats=repeats
                )
    lines = [
        "## Which pruning should I use?",
        "",
        "Ask the workbench on your own model: `wb.recommend(bench, goal=..., budget=..., device=...)` ranks pruning "
        "strategies by what it measures there (accuracy of the pruned model, speed and size of the compiled one) and "
        "says why in one sentence per strategy; `wb.ui.guide(bench)` is the same as a widget with an *Apply best* "
        "button. What it recommended on the five demo models:",
        "",
        "| you want | start with | rule of thumb | ranked first on | measured (best row per model) |",
        "|---|---|---|---|---|",
    ]
    for goal, device, question in asked:
        recs = [(m, results[(m, goal, device)]) for m in models]
        recs = [(m, r) for m, r in recs if r.rows]
        if not recs:
            continue
        votes: dict[str, int] = {}
        for _, r in recs:
            votes[r.best.name] = votes.get(r.best.name, 0) + 1
        top = max(votes, key=lambda k: (votes[k], -list(STRATEGIES).index(k)))
        s = STRATEGIES[top]
        facts = "; ".join(f"{m.removeprefix('digits-')}: {_fact(r)}" for m, r in recs)
        q = f"{question}, {_budget_text(goal, budgets[goal], recs[0][1].metric_name)}"
        lines.append(f"| {q} | {s.label} | {s.rule} | {votes[top]} of {len(recs)} models | {facts} |")
    cuda = [results[(m, "latency", "cuda")] for m in models if (m, "latency", "cuda") in results]
    if cuda and cuda[0].measured_on is None:
        lines += [
            "",
            "GPU rows: no CUDA device was available for this run, so GPU speed was not measured; that ranking uses the "
            "FLOPs a CUDA kernel can skip (structured removal everywhere; 2:4 semi-structured on sparse tensor cores, "
            "NVIDIA Ampere or newer, fp16/bf16, Linear layers with multiples of 32 x 64 features). Measure on your GPU "
            "with `wb.sparse.compile(bench, backend='auto', device='cuda')`.",
        ]
    lines += [
        "",
        f"Measured with torch {torch.__version__} on {platform.machine()}, batch 64, "
        f"{'one-shot pruning' if not finetune else f'one-shot and {finetune} epoch(s) of fine-tuning'}, on the demo "
        "models' validation split (`wb.demo.load`); speed-ups are medians of interleaved CPU-time measurements on one "
        "thread, the model compiled by `wb.sparse.compile` vs the masked dense one. Regenerate with "
        "`python -c 'from workbench.recommend import guide_markdown; print(guide_markdown(finetune=1))'`.",
    ]
    return "\n".join(lines)


def _fact(r: Recommendation) -> str:
    b = r.best
    acc = _is_accuracy(r.metric_name)
    drop = f"{-100 * b.drop:+.1f} pt" if acc else f"{-b.drop:+.4f}"
    tuned = f" + {b.finetune_epochs} ep fine-tuning" if b.finetune_epochs else ""
    flag = "" if b.meets_budget else " (closest; over budget)"
    if r.goal == "latency":
        speed = f"{b.speedup:.2f}x" if b.speedup is not None else f"{b.accelerated_flops:.0%} of FLOPs skippable"
        return f"{b.strategy}{tuned} {speed}, {drop}{flag}"
    if r.goal == "size":
        return f"{b.strategy}{tuned} {b.size:.0%} of the bytes, {drop}{flag}"
    if r.goal == "accuracy":
        return f"{b.strategy}{tuned} {drop} at {b.size_ratio:.1f}x{flag}"
    return f"{b.strategy}{tuned} FGSM {r.robust_now:.0%} -> {b.robust_accuracy:.0%}{flag}"
