"""Side-by-side comparison of pruning strategies on one live model, from the same starting point.

`compare` applies each strategy at each sparsity to the live model, measures the result (metric, parameters kept,
FLOPs, latency of the model you could deploy, its size in bytes, seconds spent) and goes back to the starting state
with the mask store's exact undo before the next one: no copy of the model is kept (only `wb.sparse.compile`'s
smaller model for a structured strategy, to time it). The model ends bitwise as it started, also when a strategy
raises or the run is interrupted; a bench's history (steps that could be redone included) is left as it was.

Strategies are names in a registry (`available_strategies()`, `register_strategy`), a `Plan` (a plan with a default
is a template: its default ratio becomes each sparsity; a plan of explicit layers is applied as it is, once), a
callable ``fn(bench, sparsity) -> Plan | None`` (None: it applied its steps itself, e.g. prune and fine-tune), or a
``(label, strategy)`` pair.

Latency is measured, never assumed: with ``backend="shrink"`` a strategy that removes whole channels is timed as the
smaller model `wb.sparse.compile` builds, any other as the masked model itself (dense kernels: zeros cost as much as
any other number on a CPU); ``backend="auto"`` times what ``compile(backend="auto")`` picks; ``"masked"`` times the
masked model always; None skips timing.

>>> import torch, workbench as wb
>>> torch.manual_seed(0) and None
>>> model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))
>>> data = [(torch.randn(64, 8), torch.randint(0, 3, (64,)))]
>>> res = compare(model, data, ["magnitude", "random"], [0.5, 0.9], backend=None)
>>> [(r["strategy"], r["sparsity"]) for r in res.rows]
[('magnitude', 0.5), ('magnitude', 0.9), ('random', 0.5), ('random', 0.9)]
>>> res.rows[1]["params"] < res.rows[0]["params"] < res.baseline["params"]
True
"""

from __future__ import annotations

import io
import math
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from ._interrupt import deferred_interrupt, settle
from ._text import table_lines
from .errors import PlanError, suggest
from .evaluate import call, eval_mode, higher_is_better, model_device, to_device
from .plan import LayerPlan, Plan, check_ratio

__all__ = [
    "CompareResult",
    "Strategy",
    "StrategyContext",
    "StrategyError",
    "available_strategies",
    "compare",
    "get_strategy",
    "pareto_front",
    "register_strategy",
]

BACKENDS = ("shrink", "auto", "masked", None)
COSTS = ("flops", "latency", "params", "size")  # x axes of a Pareto view: lower is better
_COST_KEY = {"flops": "flops", "latency": "latency_ms", "params": "params", "size": "size_bytes"}
STRUCTURED = ("filter", "neuron", "lstm-unit", "head")  # per-target structured units, in order of preference
SCAN_RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98)


class StrategyError(PlanError):
    """A strategy name that is not registered, or a strategy that cannot run on this model at this sparsity."""


@dataclass(frozen=True)
class StrategyContext:
    """What a registered strategy gets besides the bench and the sparsity: `cache` is shared by every call of one
    `compare` run (a sensitivity scan is made once for all sparsities), `seed` the run's seed."""

    cache: dict[str, Any] = field(default_factory=dict)
    seed: int = 0


StrategyFn = Callable[[Any, float, StrategyContext], "Plan | None"]


@dataclass(frozen=True)
class Strategy:
    """A registered strategy: ``fn(bench, sparsity, ctx)`` returns the Plan to apply (or applies steps itself and
    returns None). `structured`: it removes whole channels, so a physically smaller model can be built."""

    name: str
    fn: StrategyFn
    summary: str
    structured: bool = False


_REGISTRY: dict[str, Strategy] = {}


def register_strategy(
    name: str, *, structured: bool = False, overwrite: bool = False
) -> Callable[[StrategyFn], StrategyFn]:
    """Register ``fn(bench, sparsity, ctx) -> Plan | None`` under `name`; the docstring's first line is its summary.

    >>> @register_strategy("half-magnitude-demo", overwrite=True)
    ... def _half(bench, sparsity, ctx):
    ...     '''Global magnitude at half the sparsity.'''
    ...     return Plan.global_(sparsity / 2)
    >>> "half-magnitude-demo" in available_strategies()
    True
    """

    def deco(fn: StrategyFn) -> StrategyFn:
        if name in _REGISTRY and not overwrite:
            raise ValueError(f"strategy {name!r} is already registered; pass overwrite=True to replace it")
        summary = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
        _REGISTRY[name] = Strategy(name, fn, summary, structured)
        return fn

    return deco


def available_strategies() -> list[str]:
    """Names of the registered strategies.

    >>> {"magnitude", "random", "sensitivity", "entropy", "filter-l1"} <= set(available_strategies())
    True
    """
    return list(_REGISTRY)


def get_strategy(name: str) -> Strategy:
    if isinstance(name, str) and name in _REGISTRY:
        return _REGISTRY[name]
    raise StrategyError(
        f"unknown strategy {name!r}.{suggest(str(name), _REGISTRY, 'strategy')} "
        f"Valid strategies: {', '.join(_REGISTRY)} (or pass a Plan or a callable (bench, sparsity) -> Plan)."
    )


# built-in strategies ----------------------------------------------------------------------------------------
def _structured_plan(bench, sparsity: float, criterion: str, kinds: tuple[str, ...] | None = None) -> Plan:
    """Each prunable layer that supports a structured unit loses `sparsity` of its units (filters of convs,
    neurons of linears, LSTM units, attention heads); coupled layers are listed together with the same entry."""
    from .masks.select import DEFAULT_KINDS

    layers = {}
    for t in bench.targets:
        if t.kind not in DEFAULT_KINDS or t.tied_to or (kinds is not None and t.kind not in kinds):
            continue
        g = next((g for g in STRUCTURED if g in t.granularities), None)
        if g is not None:
            layers[t.name] = LayerPlan(sparsity, g, criterion)
    if not layers:
        what = "linear or conv layer with neurons/filters" if kinds else "layer with filters/neurons/units/heads"
        raise StrategyError(
            f"no {what} of {bench.name} can be pruned structurally (see bench.targets: a layer whose outputs are the "
            "model's outputs keeps them); use an unstructured strategy such as 'magnitude'"
        )
    return Plan(layers)


@register_strategy("magnitude")
def _magnitude(bench, sparsity: float, ctx: StrategyContext) -> Plan:
    """Global unstructured magnitude: the smallest weights of the whole model go first."""
    return Plan.global_(sparsity, criterion="magnitude")


@register_strategy("random")
def _random(bench, sparsity: float, ctx: StrategyContext) -> Plan:
    """Random weights (seeded): the baseline any criterion must beat."""
    return Plan.global_(sparsity, criterion="random")


@register_strategy("sensitivity")
def _sensitivity(bench, sparsity: float, ctx: StrategyContext) -> Plan:
    """Per-layer magnitude ratios allocated from a sensitivity scan (loss on calib) to remove `sparsity` of the
    prunable weights at the least predicted loss (`bench.allocate`)."""
    from .analysis.allocate import allocate
    from .analysis.sensitivity import sensitivity

    sens = ctx.cache.get("sensitivity")
    if sens is None:  # scanned once per compare run, at the starting state, attributed to the first row's time
        sens = ctx.cache["sensitivity"] = sensitivity(
            bench, SCAN_RATIOS, "weight", "magnitude", metric="loss", progress=False
        )
    return allocate(bench, sparsity, "sparsity", "weight", "magnitude", sens).plan


@register_strategy("entropy", structured=True)
def _entropy(bench, sparsity: float, ctx: StrategyContext) -> Plan:
    """Structured by activation entropy: the lowest-entropy neurons/filters of each linear/conv layer go first."""
    return _structured_plan(bench, sparsity, "entropy", kinds=("linear", "conv"))


@register_strategy("filter-l1", structured=True)
def _filter_l1(bench, sparsity: float, ctx: StrategyContext) -> Plan:
    """Structured L1 (Li et al.): whole filters, neurons, LSTM units or heads with the smallest L1 norm per layer."""
    return _structured_plan(bench, sparsity, "l1")


@register_strategy("block4x4")
def _block(bench, sparsity: float, ctx: StrategyContext) -> Plan:
    """Semi-structured: 4x4 blocks of each linear/conv weight with the smallest summed magnitude, per layer."""
    return Plan.uniform(sparsity, granularity="block4x4")


@register_strategy("2:4")
def _nm(bench, sparsity: float, ctx: StrategyContext) -> Plan:
    """N:M 2:4 (two of every four input weights kept; the pattern fixes sparsity 0.5), per layer by magnitude."""
    if not math.isclose(sparsity, 0.5):
        raise StrategyError(f"strategy '2:4' fixes the sparsity at 0.5 (2 of every 4 weights kept), got {sparsity:g}")
    return Plan.uniform(0.5, granularity="2:4")


@register_strategy("layer")
def _layer(bench, sparsity: float, ctx: StrategyContext) -> Plan:
    """Layer pruning: that share of the residual branches (lowest mean magnitude) removed whole; the skip
    connections keep the network connected (models without residual branches: an error naming why)."""
    return Plan.uniform(sparsity, granularity="layer")


# the result ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CompareResult:
    """One row per strategy and sparsity (plain dicts), and the starting state's measurements (`baseline`).

    Row keys: ``strategy``, ``sparsity`` (asked), ``achieved`` (share of prunable weights now zero), ``metric``,
    ``accuracy`` (None without class labels), ``delta`` (metric minus the baseline's), ``retention`` (metric /
    baseline metric), ``params`` (non-zero parameters), ``params_deployed`` (parameters the deployed model stores),
    ``flops`` (effective FLOPs per sample: dense FLOPs scaled by each layer's share of non-zero weights, what the
    sparsity could save at best), ``flops_deployed`` (FLOPs the deployed model executes per sample),
    ``latency_ms`` (measured, deployed model, per batch of `batch_size`), ``masked_latency_ms`` (the masked model,
    interleaved with it), ``start_latency_ms`` (the starting state, interleaved with both), ``speedup`` (median over
    the interleaved rounds of start / deployed latency), ``size_bytes`` (serialized state dict of the
    deployed model), ``deployed`` ("masked" or the compile backend), ``seconds`` (pruning and evaluating),
    ``error`` (None, or the message when ``on_error="record"``).
    """

    rows: tuple[dict[str, Any], ...]
    baseline: dict[str, Any]
    metric_name: str
    higher_is_better: bool
    strategies: tuple[str, ...]
    sparsities: tuple[float, ...]
    batch_size: int
    backend: str | None
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": [dict(r) for r in self.rows],
            "baseline": dict(self.baseline),
            "metric_name": self.metric_name,
            "higher_is_better": self.higher_is_better,
            "strategies": list(self.strategies),
            "sparsities": list(self.sparsities),
            "batch_size": self.batch_size,
            "backend": self.backend,
            "info": dict(self.info),
        }

    def to_pandas(self):
        import pandas as pd

        return pd.DataFrame(list(self.rows))

    def row(self, strategy: str, sparsity: float) -> dict[str, Any]:
        """The row of `strategy` at `sparsity`."""
        for r in self.rows:
            if r["strategy"] == strategy and (r["sparsity"] == sparsity or math.isclose(r["sparsity"] or -1, sparsity)):
                return r
        raise KeyError(f"no row for strategy {strategy!r} at sparsity {sparsity:g}; have {self.strategies}")

    def values(self, key: str, strategy: str | None = None) -> np.ndarray:
        """Column `key` as a float array (None -> NaN), optionally of one strategy's rows."""
        rows = [r for r in self.rows if strategy is None or r["strategy"] == strategy]
        return np.array([np.nan if r.get(key) is None else float(r[key]) for r in rows], dtype=float)

    def table(self) -> str:
        """The rows as aligned text, the baseline first."""

        def num(v: Any, fmt: str) -> str:
            return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)

        head = ("strategy", "sparsity", "achieved", self.metric_name, "Δ", "params", "MFLOPs", "ms", "speedup",
                "KiB", "deployed", "s")  # fmt: skip
        rows = [head]
        for r in (self.baseline, *self.rows):
            rows.append(
                (
                    str(r["strategy"]),
                    num(r["sparsity"], ".0%"),
                    num(r["achieved"], ".1%"),
                    num(r["metric"], ".4f"),
                    num(r["delta"], "+.4f"),
                    num(r["params"], ","),
                    num(None if r["flops"] is None else r["flops"] / 1e6, ".3f"),
                    num(r["latency_ms"], ".3f"),
                    num(r["speedup"], ".2f") + ("x" if r["speedup"] is not None else ""),
                    num(None if r["size_bytes"] is None else r["size_bytes"] / 1024, ".1f"),
                    str(r["deployed"]) if not r.get("error") else "error: " + r["error"][:60],
                    num(r["seconds"], ".2f"),
                )
            )
        lines = table_lines(rows, right=set(range(len(head))) - {0, 10})
        lines.append(
            f"latency: median ms per batch of {self.batch_size} ({self.backend or 'not measured'}); "
            f"{self.baseline['latency_ms'] or 0:.3f} ms at the start"
        )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def pareto_front(result: CompareResult, x: str = "flops") -> list[int]:
    """Indices of the rows no other row beats on both cost `x` ("flops", "latency", "params", "size"; lower is
    better) and the metric; sorted by cost. Rows with a missing value are left out."""
    if x not in COSTS:
        raise ValueError(f"x must be one of {COSTS}, got {x!r}")
    cost = result.values(_COST_KEY[x])
    y = result.values("metric")
    y = y if result.higher_is_better else -y
    ok = [i for i in range(len(cost)) if np.isfinite(cost[i]) and np.isfinite(y[i])]
    front = []
    for i in ok:
        dominated = any(
            cost[j] <= cost[i] and y[j] >= y[i] and (cost[j] < cost[i] or y[j] > y[i]) for j in ok if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: cost[i])


# measuring ----------------------------------------------------------------------------------------------------
def _inputs(bench, batch_size: int) -> Any:
    """`batch_size` rows of real inputs (the evaluation data's first batches, repeated if needed)."""
    if bench.data is None:
        return to_device(bench.example_inputs, model_device(bench.model))
    return bench.adapter.rows(bench.data, batch_size)


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


def _block_ms(fn: Callable[[], Any], n: int, sync: Callable[[], None]) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    sync()
    return (time.perf_counter() - t0) / n * 1e3


def _calls_per_block(fn: Callable[[], Any], sync: Callable[[], None], min_block_s: float = 0.004) -> int:
    fn()
    fn()  # warm up
    n = 1
    while True:
        elapsed = _block_ms(fn, n, sync) * n / 1e3
        if elapsed >= min_block_s or n >= 1 << 12:
            return n
        n = min(n * max(2, int(min_block_s / max(elapsed, 1e-7))), 1 << 12)


def _latencies(bench, start: int, end: int, deployed: nn.Module, x: Any, repeats: int) -> dict[str, float]:
    """Median ms per call of the model at the start state, the masked model now and the deployed model, measured
    in interleaved rounds: the live model moves between the two states (exact undo/redo, not timed) between
    blocks, so a busy machine slows all three alike and no copy of the start model is needed."""
    model, store = bench.model, bench.store
    dev = model_device(model)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    fns = {"start": lambda: call(model, x), "masked": lambda: call(model, x)}
    if deployed is not model:
        fns["deployed"] = lambda: call(deployed, x)
    rounds = [(start, ["start"]), (end, [k for k in fns if k != "start"])]
    samples: dict[str, list[float]] = {k: [] for k in fns}
    with eval_mode(model), eval_mode(deployed), torch.inference_mode():
        n: dict[str, int] = {}
        for state, keys in rounds:
            store.goto_(state)
            n.update({k: _calls_per_block(fns[k], sync) for k in keys})
        for _ in range(repeats):
            for state, keys in rounds:
                if start != end:
                    store.goto_(state)
                for k in keys:
                    samples[k].append(_block_ms(fns[k], n[k], sync))
    out = {k: statistics.median(v) for k, v in samples.items()}
    # each round's start and deployed blocks ran back to back: the median of their ratios is the speedup least
    # disturbed by other work on the machine (a slow spell hits both blocks of a round alike)
    last = samples.get("deployed", samples["masked"])
    out["speedup"] = statistics.median(a / b for a, b in zip(samples["start"], last))
    return out


def _measure(bench, data, x, backend, repeats, start: int | None) -> dict[str, Any]:
    """Everything a row reports about the live model as it is now (and the model deployed from it); latencies are
    measured interleaved with the state at position `start` (None: the current state, for the baseline)."""
    from .analysis.profile import profile

    model = bench.model
    ev = bench.evaluate(data)
    prof = profile(bench, batch_size=1, repeats=1, per_layer=False)
    x1 = x[:1] if isinstance(x, Tensor) else x
    report = bench.report(evaluate=False)
    deployed, how = model, "masked"
    if backend in ("shrink", "auto"):
        deployed, how = _deploy(bench, backend, x)
    out = {
        "metric_name": ev["metric_name"],
        "metric": float(ev["metric"]),
        "accuracy": ev.get("accuracy"),
        "achieved": float(report.sparsity),
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
        end = bench.store.position
        t = _latencies(bench, end if start is None else start, end, deployed, x, repeats)
        out["start_latency_ms"], out["masked_latency_ms"] = t["start"], t["masked"]
        out["latency_ms"] = t.get("deployed", t["masked"])
        out["speedup"] = t["speedup"]
    return out


def _deploy(bench, backend: str, x: Any) -> tuple[nn.Module, str]:
    """The model one would ship: `compile`'s output when it builds something other than the masked model."""
    from .sparse import compile
    from .sparse.shrink import prunable_channels

    if backend == "shrink":
        groups = bench.groups
        params = dict(bench.model.named_parameters(remove_duplicate=False))  # tied tensors under every name
        if groups is None or not prunable_channels(groups, params, bench.store.masks()):
            return bench.model, "masked"  # nothing to remove physically: the masked model is what runs
    fast, rep = compile(bench, backend=backend, batch_size=x.shape[0] if isinstance(x, Tensor) else 64)
    if backend == "auto" and not rep.removed_channels and all(c == "dense" for c in rep.chosen.values()):
        return bench.model, "masked"  # compile kept the dense copy: time the model itself, not a copy of it
    used = "shrink" if rep.removed_channels else ""
    layer = sorted({c for c in rep.chosen.values() if c != "dense"})
    return fast, "+".join(filter(None, [used, *layer])) or backend


# the comparison -----------------------------------------------------------------------------------------------
def _normalize(strategies: Any) -> list[tuple[str, Any]]:
    if isinstance(strategies, (str, Plan)) or callable(strategies):
        strategies = [strategies]
    try:
        items = list(strategies)
    except TypeError:
        raise StrategyError(f"strategies must be a list of names, Plans or callables, got {strategies!r}") from None
    if not items:
        raise StrategyError(
            f"no strategies to compare: pass at least one of {', '.join(_REGISTRY)} (or a Plan or a callable)"
        )
    out: list[tuple[str, Any]] = []
    for s in items:
        if isinstance(s, tuple) and len(s) == 2 and isinstance(s[0], str):
            label, s = s
        elif isinstance(s, str):
            label = s
        elif isinstance(s, Plan):
            label = repr(s)
        elif callable(s):
            label = getattr(s, "__name__", type(s).__name__)
        else:
            raise StrategyError(f"a strategy must be a name, a Plan or a callable, got {s!r}")
        if isinstance(s, str):
            get_strategy(s)  # raises, listing the valid names
        elif not isinstance(s, Plan) and not callable(s):
            raise StrategyError(f"strategy {label!r} must be a name, a Plan or a callable, got {s!r}")
        if any(label == o[0] for o in out):
            raise StrategyError(
                f"strategy {label!r} is listed twice; give one of them another label: (label, strategy)"
            )
        out.append((label, s))
    return out


def _sparsities(sparsities: Any) -> list[float]:
    if isinstance(sparsities, (int, float)):
        sparsities = [sparsities]
    items = list(sparsities)
    if not items:
        raise StrategyError("no sparsities to compare: pass at least one, e.g. sparsities=[0.5, 0.8]")
    return [check_ratio(s, "compare sparsity") for s in items]


def _plan_for(strategy: Any, bench, sparsity: float | None, ctx: StrategyContext) -> Plan | None:
    if isinstance(strategy, str):
        plan = get_strategy(strategy).fn(bench, sparsity, ctx)
    elif isinstance(strategy, Plan):
        if strategy.default is None:
            return strategy
        d = strategy.default
        return Plan(strategy.layers, LayerPlan(sparsity, d.granularity, d.criterion), strategy.scope,
                    strategy.include, strategy.exclude)  # fmt: skip
    else:
        plan = strategy(bench, sparsity)
    if plan is not None and not isinstance(plan, Plan):
        raise StrategyError(f"a strategy must return a Plan or None (it applied its steps itself), got {plan!r}")
    return plan


def compare(
    model_or_bench: Any,
    data: Iterable | None = None,
    strategies: Sequence[Any] = ("magnitude", "random", "sensitivity", "entropy", "filter-l1"),
    sparsities: Sequence[float] = (0.5, 0.8),
    *,
    metric: Any = "accuracy",
    backend: str | None = "shrink",
    batch_size: int = 64,
    repeats: int = 7,
    on_error: str = "raise",
    finetune: int | dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
    seed: int = 0,
) -> CompareResult:
    """Run every strategy at every sparsity from the same starting point; see the module docstring.

    `model_or_bench`: an `nn.Module` (a Workbench is attached to it for the run) or a `Workbench` (its current state
    is the starting point). `data`: evaluation batches (a DemoData uses its ``val``); with a bench, None means the
    bench's data. `on_error`: ``"raise"`` (after restoring the model) or ``"record"`` (the row keeps the message).
    `finetune`: epochs (or keyword arguments of `Workbench.finetune`) to train each pruned model with its masks
    enforced before it is measured; needs training data (a DemoData, or a bench made with ``train=``).
    `progress(done, total)` is called after each row.
    """
    from .bench import Workbench

    if on_error not in ("raise", "record"):
        raise StrategyError(f"on_error must be 'raise' or 'record', got {on_error!r}")
    if backend not in BACKENDS:
        raise StrategyError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if not isinstance(batch_size, int) or batch_size < 1 or not isinstance(repeats, int) or repeats < 1:
        raise StrategyError(f"batch_size and repeats must be positive ints, got {batch_size!r} and {repeats!r}")
    if finetune is not None and not isinstance(finetune, dict):
        if isinstance(finetune, bool) or not isinstance(finetune, int) or finetune < 1:
            raise StrategyError(f"finetune is a number of epochs >= 1 or a dict of finetune options, got {finetune!r}")
        finetune = {"epochs": finetune}
    items = _normalize(strategies)
    ratios = _sparsities(sparsities)
    if isinstance(model_or_bench, Workbench):
        bench = model_or_bench
        if hasattr(data, "val") and hasattr(data, "train"):
            data = data.val
    elif isinstance(model_or_bench, nn.Module):
        bench = Workbench(model_or_bench, data, metric, seed=seed)
        data = None
    else:
        raise StrategyError(f"compare takes an nn.Module or a Workbench, got {type(model_or_bench).__name__}")
    if finetune is not None and bench.train is None:
        raise StrategyError("finetune needs training data: pass a DemoData, or a Workbench made with train=...")
    with bench.store.transaction():
        return _compare(bench, data, items, ratios, backend, batch_size, repeats, finetune, on_error, progress, seed)


def _compare(bench, data, items, ratios, backend, batch_size, repeats, finetune, on_error, progress, seed):
    x = _inputs(bench, batch_size)
    store = bench.store
    start = store.position
    tail_steps, tail_entries = store.steps[start:], list(bench._entries[start:])
    kept = (bench.last_sensitivity, bench.last_allocation)
    ctx = StrategyContext({}, seed)
    rows: list[dict[str, Any]] = []
    total = len(items) * len(ratios)
    try:
        base = _measure(bench, data, x, backend, repeats, None)
        metric_name = base.pop("metric_name")
        base.update(strategy="start", sparsity=0.0, seconds=0.0, error=None, delta=0.0, retention=1.0)
        for label, strategy in items:
            fixed = isinstance(strategy, Plan) and strategy.default is None
            for s in [None] if fixed else ratios:
                row: dict[str, Any] = {"strategy": label, "sparsity": s, "error": None}
                t0 = time.perf_counter()
                try:
                    if fixed or s > 0:
                        plan = _plan_for(strategy, bench, s, ctx)
                        if plan is not None:
                            bench.apply(plan, label=f"compare: {label}", evaluate=False)
                        if finetune is not None:
                            bench.finetune(**{"progress": False, **finetune})
                    row["seconds"] = time.perf_counter() - t0
                    row.update(_measure(bench, data, x, backend, repeats, start))
                    del row["metric_name"]
                    row["delta"] = row["metric"] - base["metric"]
                    row["retention"] = row["metric"] / base["metric"] if base["metric"] else None
                except Exception as e:
                    if on_error == "raise":
                        raise
                    row.update({k: None for k in base if k not in row})
                    row.pop("metric_name", None)
                    row["error"] = f"{type(e).__name__}: {e}"
                    row["seconds"] = time.perf_counter() - t0
                finally:
                    settle(lambda: store.position == start, lambda: store.goto_(start))
                rows.append(row)
                if progress is not None:
                    progress(len(rows), total)
    finally:
        settle(lambda: store.position == start, lambda: store.goto_(start))
        with deferred_interrupt():
            store.restore_tail_(tail_steps)
            bench._entries[start:] = tail_entries
            bench.last_sensitivity, bench.last_allocation = kept
    return CompareResult(
        rows=tuple(rows),
        baseline=base,
        metric_name=metric_name,
        higher_is_better=higher_is_better(bench.metric),
        strategies=tuple(label for label, _ in items),
        sparsities=tuple(ratios),
        batch_size=batch_size,
        backend=backend,
        info={"model": bench.name, "device": str(model_device(bench.model)), "threads": torch.get_num_threads()},
    )
