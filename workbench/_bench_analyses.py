"""The Workbench's analyses (a mixin of `workbench.bench.Workbench`): each holds the bench's lock and calls the
analysis in `workbench.analysis`, whose parameters it spells out, so ``help(bench.robustness)`` shows them."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor
from typing import Any

from .evaluate import MetricLike

__all__ = ["Analyses"]


class Analyses:
    """Sensitivity, entropy, connectivity, profile, allocation and the effects of pruning, on the live model."""

    def sensitivity(
        self,
        ratios: Iterable[float] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
        granularity: str = "weight",
        criterion: str = "magnitude",
        *,
        layers: Sequence[str] | None = None,
        data: Iterable | None = None,
        metric: MetricLike | None = None,
        mode: str = "exact",
        second_order: bool = False,
        executor: Executor | None = None,
        progress: Callable[[int, int], None] | bool | None = True,
        engine: str = "auto",
        trust_cells: int = 8,
        around: Any = None,
        budget: float | None = None,
        time_limit: float | None = None,
        stop: Callable[[], bool] | None = None,
        on_update: Callable[[Any], None] | None = None,
    ):
        """Metric change per layer (or coupled group) and ratio, each pruned alone; the model is never written to.

        ``mode="exact"`` measures every cell (`executor`: threads or a Dask client; `engine`: ``"auto"``, ``"suffix"``
        (torch.fx), ``"replay"`` (recorded module calls, for models fx cannot trace), ``"full"``, or ``"batched"``:
        a row's ratios in one vmapped pass, which ``"auto"`` takes where it times faster on the first row);
        ``"estimate"`` predicts loss changes from one gradient pass (with the diagonal-Fisher term when
        `second_order`) and measures `trust_cells` cells exactly for its `trust` figure;
        ``"refine"`` starts from the estimate and measures cells nearest the ratios of `around` (default: the current
        state) first, until `budget` (a share of the cells), `time_limit`, `stop()` or Ctrl-C, calling
        `on_update(result)` per cell; the cells not measured yet are predicted from those measured (`result.fill`
        says how). See `workbench.analysis.sensitivity`. The last result is `self.last_sensitivity`.
        """
        from .analysis.sensitivity import sensitivity

        with self.store.lock:
            result = sensitivity(
                self.state,
                ratios,
                granularity,
                criterion,
                layers=layers,
                data=data,
                metric=metric,
                mode=mode,
                second_order=second_order,
                executor=executor,
                progress=progress,
                engine=engine,
                trust_cells=trust_cells,
                around=around,
                budget=budget,
                time_limit=time_limit,
                stop=stop,
                on_update=on_update,
            )
            self.last_sensitivity = result
        return result

    def entropy(self, *, layers: Sequence[str] | None = None, data: Iterable | None = None, bins: int = 32):
        """Per-unit activation entropy on `data` (default: the calibration data) in `bins` histogram bins, and
        per-layer weight entropy, for `layers` (default: every linear/conv target); `workbench.analysis.entropy`."""
        from .analysis.entropy import entropy

        with self.store.lock:
            return entropy(self.state, layers=layers, data=data, bins=bins)

    def connectivity(self, layer: str):
        """Surviving connections of `layer` now vs dense, with dead units (`workbench.analysis.connectivity`)."""
        from .analysis.connectivity import connectivity

        with self.store.lock:
            return connectivity(self.state, layer)

    def paths(self):
        """Surviving input-to-output path counts per layer (log10), now vs dense."""
        from .analysis.connectivity import paths

        with self.store.lock:
            return paths(self.state)

    def profile(
        self, *, batch_size: int = 64, repeats: int = 20, layers: Sequence[str] | None = None, per_layer: bool = True
    ):
        """Per layer: params, non-zeros, dense/effective FLOPs, latency (median of `repeats` at `batch_size` rows;
        per layer unless ``per_layer=False``), memory (`workbench.analysis.profile`)."""
        from .analysis.profile import profile

        with self.store.lock:
            return profile(self.state, batch_size=batch_size, repeats=repeats, layers=layers, per_layer=per_layer)

    def allocate(
        self,
        budget: float,
        target: str = "flops",
        granularity: str = "weight",
        criterion: str = "magnitude",
        sens=None,
        ratios=None,
    ):
        """Per-layer ratios removing `budget` (a share in (0, 1)) of `target` ("flops", "params" or "sparsity") at
        the least predicted metric loss, from the sensitivity curves (scanned if `sens` is not given): an
        `Allocation` with its `plan`, the chosen ratio, removed amount and predicted change per row, and what it
        `achieved`. ``bench.apply(allocation)`` applies the plan. The last one is also `self.last_allocation`."""
        from .analysis.allocate import allocate, check_budget, scan_for

        check_budget(budget, target)  # before a scan
        with self.store.lock:
            if sens is None:  # the scan is also this bench's last one
                self.last_sensitivity = sens = scan_for(self.state, granularity, criterion, ratios)
            self.last_allocation = allocate(self.state, budget, target, granularity, criterion, sens, ratios)
        return self.last_allocation

    # effects of pruning: two history states compared on the live model (transactions, no copies) -------------
    def attributions(
        self,
        method: str = "integrated_gradients",
        samples: int = 16,
        *,
        before: int | None = None,
        after: int | None = None,
        target: str | int = "dense",
        data: Iterable | None = None,
        topk: float = 0.1,
        embedding: str | None = None,
        seed: int = 0,
        progress: Callable[[int, int], None] | bool | None = None,
        **options: Any,
    ):
        """Attributions (captum) of `samples` samples in history entries `before` and `after` (default: the state
        before the current step and now), with their similarity (Spearman, top-`topk` overlap). `target` is the
        class explained (``"dense"``, ``"before"``, ``"label"`` or an index); `options` go to the method (e.g.
        ``n_steps=64``). See `workbench.analysis.attributions`."""
        from .analysis.attributions import attributions

        with self.store.lock:
            return attributions(
                self.state,
                method,
                samples,
                before=before,
                after=after,
                target=target,
                data=data,
                topk=topk,
                embedding=embedding,
                seed=seed,
                progress=progress,
                **options,
            )

    def robustness(
        self,
        attacks: Sequence[str] | str | None = None,
        eps: Iterable[float] | None = None,
        *,
        before: int | None = None,
        after: int | None = None,
        data: Iterable | None = None,
        samples: int | None = None,
        x_range: tuple[float, float] | None = None,
        steps: int = 10,
        step_size: float | None = None,
        seed: int = 0,
        progress: Callable[[int, int], None] | bool | None = None,
    ):
        """Accuracy under attack vs eps, in history entries `before` and `after` (default: the state before the
        current step and now; default attacks: FGSM, PGD and Gaussian noise at eps 0 to 0.2 on continuous inputs,
        token substitution of 0 to 50% on token inputs), on the first `samples` samples of `data`; PGD takes
        `steps` steps of `step_size`. See `workbench.analysis.robustness`."""
        from .analysis.robustness import robustness

        with self.store.lock:
            return robustness(
                self.state,
                attacks,
                eps,
                before=before,
                after=after,
                data=data,
                samples=samples,
                x_range=x_range,
                steps=steps,
                step_size=step_size,
                seed=seed,
                progress=progress,
            )

    def bias(
        self,
        *,
        before: int | None = None,
        after: int | None = None,
        data: Iterable | None = None,
        train: Iterable | None = None,
        classes: Sequence[str] | None = None,
        plans: Sequence[Any] | None = None,
        base: int = 0,
        max_exemplars: int = 32,
        progress: Callable[[int, int], None] | bool | None = None,
    ):
        """Per-class accuracy, confusion, flipped samples and train/val gap in history entries `before` and
        `after`, and with `plans` (Plans or sparsities, applied on top of entry `base`) overall vs worst-class
        accuracy; see `workbench.analysis.bias`."""
        from .analysis.bias import bias

        with self.store.lock:
            return bias(
                self.state,
                before=before,
                after=after,
                data=data,
                train=train,
                classes=classes,
                plans=plans,
                base=base,
                max_exemplars=max_exemplars,
                progress=progress,
            )

    def compare_states(self, a: int = 0, b: int = -1, *, data: Iterable | None = None):
        """Metrics, sparsity and prediction agreement of history entries `a` and `b` (negative: from the end of
        the history); the model is visited in each state and restored bitwise. See `workbench.analysis.bias`."""
        from .analysis.bias import compare_states

        with self.store.lock:
            return compare_states(self.state, a, b, data=data)
