"""`compare`: every strategy at every sparsity from one starting state, which the live model returns to."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn

from .._interrupt import settle
from ..evaluate import higher_is_better, model_device
from ..plan import LayerPlan, Plan, check_ratio
from ..state import as_state
from .measure import _inputs, _measure
from .registry import StrategyContext, StrategyError, available_strategies, get_strategy
from .result import CompareResult

__all__ = ["BACKENDS", "compare"]

BACKENDS = ("shrink", "auto", "masked", None)


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
            f"no strategies to compare: pass at least one of {', '.join(available_strategies())} (or a Plan or a callable)"
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
            if not get_strategy(s).comparable:  # an unknown name raises, listing the valid ones
                raise StrategyError(
                    f"strategy {s!r} is one `recommend` searches; compare cannot run it. Compare runs: "
                    f"{', '.join(available_strategies())} (or pass a Plan or a callable (bench, sparsity) -> Plan)"
                )
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

    `model_or_bench`: an `nn.Module` (a Workbench is attached to it for the run), a `Workbench` or its `State`
    (``bench.state``; its current state is the starting point, its history is where the steps are tried and dropped).
    A strategy callable gets what was passed (the Workbench or the State; the new Workbench for a module).
    `data`: evaluation batches (a DemoData uses its ``val``); with a bench, None means the bench's data.
    `on_error`: ``"raise"`` (after restoring the model) or ``"record"`` (the row keeps the message).
    `finetune`: epochs (or keyword arguments of `Workbench.finetune`) to train each pruned model with its masks
    enforced before it is measured; needs training data (a DemoData, or a bench made with ``train=``).
    `progress(done, total)` is called after each row.
    """
    from ..bench import Workbench

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
    if isinstance(model_or_bench, nn.Module):
        given = Workbench(model_or_bench, data, metric, seed=seed)
        data = None
    else:
        given = model_or_bench
        if as_state(given, error=StrategyError, what="compare takes an nn.Module or a Workbench").log is None:
            raise StrategyError(
                "compare applies and drops steps in a bench's history: pass the Workbench, its .state (or the "
                f"nn.Module), not a {type(given).__name__} without a bench"
            )
        if hasattr(data, "val") and hasattr(data, "train"):
            data = data.val
    state = as_state(given)
    if finetune is not None and state.train is None:
        raise StrategyError("finetune needs training data: pass a DemoData, or a Workbench made with train=...")
    with state.store.transaction():
        return _compare(state, given, data, items, ratios, backend, batch_size, repeats, finetune, on_error,
                        progress, seed)  # fmt: skip


def _compare(state, given, data, items, ratios, backend, batch_size, repeats, finetune, on_error, progress, seed):
    """The rows, on `state` (strategy callables get `given`: what `compare` was passed)."""
    from ..training.finetune import finetune as finetune_

    x = _inputs(state, batch_size)
    store, log = state.store, state.log
    ctx = StrategyContext({}, seed)
    rows: list[dict[str, Any]] = []
    total = len(items) * len(ratios)
    with log.trial():  # the model, the history and the last scan/allocation come back as they were
        start = store.position
        base = _measure(state, data, x, backend, repeats, None)
        metric_name = base.pop("metric_name")
        base.update(strategy="start", sparsity=0.0, seconds=0.0, error=None, delta=0.0, retention=1.0)
        for label, strategy in items:
            fixed = isinstance(strategy, Plan) and strategy.default is None
            for s in [None] if fixed else ratios:
                row: dict[str, Any] = {"strategy": label, "sparsity": s, "error": None}
                t0 = time.perf_counter()
                try:
                    if fixed or s > 0:
                        plan = _plan_for(strategy, given, s, ctx)
                        if plan is not None:
                            state.apply(plan, label=f"compare: {label}", evaluate=False)
                        if finetune is not None:
                            finetune_(state, **{"progress": False, **finetune})
                    row["seconds"] = time.perf_counter() - t0
                    row.update(_measure(state, data, x, backend, repeats, start))
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
    return CompareResult(
        rows=tuple(rows),
        baseline=base,
        metric_name=metric_name,
        higher_is_better=higher_is_better(state.metric),
        strategies=tuple(label for label, _ in items),
        sparsities=tuple(ratios),
        batch_size=batch_size,
        backend=backend,
        info={"model": state.name, "device": str(model_device(state.model)), "threads": torch.get_num_threads()},
    )
