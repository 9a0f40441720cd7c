"""What one `recommend` call measures once (metric, sizes, FLOPs, Taylor estimate, robustness) and shares."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from ..plan import Plan
from ..state import FixedMasks, State
from .candidates import FGSM_EPS, Strategy


def _nbytes(module: nn.Module) -> int:
    return sum(v.numel() * v.element_size() for v in module.state_dict().values() if isinstance(v, torch.Tensor))


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

    def __init__(self, state: State, goal: str, budget: float, device: torch.device, batch_size: int):
        from ..analysis._graph import clone_with
        from ..analysis.profile import profile
        from ..analysis.sensitivity import _grads
        from ..evaluate import eval_mode, higher_is_better
        from ..masks.select import DEFAULT_KINDS

        self.state, self.goal, self.budget, self.device, self.batch_size = state, goal, budget, device, batch_size
        self.model = model = state.model
        self.higher = higher_is_better(state.metric)
        now = state.evaluate()
        self.metric_now = float(now["metric"])
        self.metric_name = str(now.get("metric_name") or state.metric)
        self.params = sum(p.numel() for p in model.parameters())
        self.bytes_now = _nbytes(model)
        self.current = state.store.masks()
        self.weights = {n for t in state.targets if t.kind in DEFAULT_KINDS and not t.tied_to for n in t.param_names()}
        self.n_weights = sum(model.get_parameter(n).numel() for n in self.weights)
        with state.store.lock:  # measured once: allocation is given it (`allocate(..., profile=ctx.prof)`)
            self.prof = profile(state, batch_size=batch_size, repeats=1, per_layer=False)
        self.flops = float(self.prof.total_flops_dense)
        self.flops_per_weight: dict[str, float] = {}
        self.cuda_24: dict[str, float] = {}  # Linear weights whose shapes fit the 2:4 kernels -> their FLOPs
        for i, name in enumerate(self.prof.layers):
            for p in state.targets[name].param_names():
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
            for x, y in state.adapter.batches(state.calib, model):
                gs, n = _grads(state.adapter, model, names, params, x, y)  # autograd.grad: no .grad is written
                for acc, g in zip(grads, gs):
                    acc += g
                count += n
        self.taylor = {n: -g / max(count, 1) * p.detach().double() for n, g, p in zip(names, grads, params)}
        self.robust = None
        self.robust_now = None
        if goal == "robustness":
            from ..analysis.robustness import robust_accuracy

            self.robust = robust_accuracy("fgsm", FGSM_EPS, seed=state.seed)
            self.robust_now = float(self.robust(clone_with(model, {}), state.data))

    def masks(self, plan: Plan) -> dict[str, torch.Tensor]:
        return {**self.current, **self.state.preview(plan).masks}

    def masked(self, module: nn.Module, masks: dict[str, torch.Tensor]) -> State:
        """The state `workbench.sparse.compile` reads for `module` (the live model or a clone of it) with `masks`
        (full names) applied: the live model's groups, data and example inputs, no history."""
        return replace(self.state, model=module, store=FixedMasks(masks), log=None)

    def clone(self, masks: dict[str, torch.Tensor]) -> nn.Module:
        """A structural clone of the live model sharing every tensor but the masked ones (the model is not written)."""
        from ..analysis._graph import clone_with, masked_params

        return clone_with(self.model, masked_params(self.model, masks))

    def metric(self, module: nn.Module) -> float:
        from ..evaluate import evaluate

        return float(evaluate(module, self.state.data, self.state.metric, adapter=self.state.adapter)["metric"])

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
        robust = float(self.robust(module, self.state.data)) if self.robust is not None else None
        return _Cand(s, gran, epochs, ratio, plan, masks, module, value, robust, self.counts(masks))
