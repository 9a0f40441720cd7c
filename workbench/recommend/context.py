"""What one `recommend` call measures once (metric, sizes, FLOPs, Taylor estimate, robustness) and shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..plan import Plan
from .candidates import FGSM_EPS, Strategy


def _nbytes(module: nn.Module) -> int:
    return sum(v.numel() * v.element_size() for v in module.state_dict().values() if isinstance(v, torch.Tensor))


class _Masked:
    """What `workbench.sparse.compile` reads from a Workbench, for `model` with `masks` (full names) applied."""

    def __init__(self, bench, model: nn.Module, masks: dict[str, torch.Tensor]):
        self.model, self.groups, self.example_inputs, self.data = model, bench.groups, bench.example_inputs, bench.data
        self.adapter = bench.adapter
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
        from ..analysis._graph import clone_with
        from ..analysis.sensitivity import _grads
        from ..evaluate import eval_mode, higher_is_better
        from ..masks.select import DEFAULT_KINDS

        self.bench, self.goal, self.budget, self.device, self.batch_size = bench, goal, budget, device, batch_size
        self.model = model = bench.model
        self.higher = higher_is_better(bench.metric)
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
        names = [n for n, p in model.named_parameters() if p.is_floating_point()]  # frozen ones too
        params = [model.get_parameter(n) for n in names]
        grads = [torch.zeros_like(p, dtype=torch.float64) for p in params]
        count = 0
        with eval_mode(model), torch.enable_grad():
            for x, y in bench.adapter.batches(bench.calib, model):
                gs, n = _grads(bench.adapter, model, names, params, x, y)  # autograd.grad: no .grad is written
                for acc, g in zip(grads, gs):
                    acc += g
                count += n
        self.taylor = {n: -g / max(count, 1) * p.detach().double() for n, g, p in zip(names, grads, params)}
        self.robust = None
        self.robust_now = None
        if goal == "robustness":
            from ..analysis.robustness import robust_accuracy

            self.robust = robust_accuracy("fgsm", FGSM_EPS, seed=bench.seed)
            self.robust_now = float(self.robust(clone_with(model, {}), bench.data))

    def masks(self, plan: Plan) -> dict[str, torch.Tensor]:
        return {**self.current, **self.bench.preview(plan).masks}

    def clone(self, masks: dict[str, torch.Tensor]) -> nn.Module:
        """A structural clone of the live model sharing every tensor but the masked ones (the model is not written)."""
        from ..analysis._graph import clone_with, masked_params

        return clone_with(self.model, masked_params(self.model, masks))

    def metric(self, module: nn.Module) -> float:
        from ..evaluate import evaluate

        return float(evaluate(module, self.bench.data, self.bench.metric, adapter=self.bench.adapter)["metric"])

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
