"""`analyze_groups`: the rules, the hidden-size probe, residual branches and Torch-Pruning's graph, bounded."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from .._caches import restore_caches, snapshot_caches
from .own import _head_groups, _rnn_groups
from .timebound import TraceTimeout, time_bound
from .trace import _tp_groups, custom_pruners, traced_output
from .types import GroupAnalysis


def trace_call(example_inputs: Any) -> tuple[Any, Callable[[nn.Module, Any], Any]]:
    """Torch-Pruning's `example_inputs` and `forward_fn` for inputs given as a tensor, a tuple of positional inputs
    or a dict of keyword inputs."""
    if isinstance(example_inputs, Mapping):
        return dict(example_inputs), lambda m, x: traced_output(m(**x))
    inputs = tuple(example_inputs) if isinstance(example_inputs, (list, tuple)) else (example_inputs,)
    return inputs, lambda m, x: traced_output(m(*x))


def _first_sample(inputs: Any) -> Any:
    from ..adapter import take

    try:
        return take(dict(inputs) if isinstance(inputs, Mapping) else tuple(inputs), 1)
    except Exception:
        return inputs


def _call(model: nn.Module, inputs: Any) -> Any:
    return model(**inputs) if isinstance(inputs, Mapping) else model(*inputs)


TRACE_SECONDS = 8.0  # the bound on Torch-Pruning's dependency graph; beyond it the module-tree rules stand alone


def analyze_groups(model: nn.Module, example_inputs: Any, *, timeout: float | None = TRACE_SECONDS) -> GroupAnalysis:
    """Trace `model` on `example_inputs` and return its coupled output-channel groups.

    Attention heads and MLP neurons of transformer blocks come from module-tree rules first (`workbench.rules`, no
    tracing). Torch-Pruning's trace adds every other coupled channel; it runs under ``torch.no_grad``-free autograd
    (it reads grad_fn graphs) for at most `timeout` seconds (its graph fix-up never returns on some models, e.g.
    grouped-query attention): past that it is stopped and the rules stand alone, with the reason in
    `GroupAnalysis.error`. `example_inputs`: a tensor, a tuple of positional inputs or a dict of keyword inputs.

    The model is traced in eval mode; its train/eval flags are restored and no hook is left behind. Parameters and
    buffers are not changed, and no tensor of the trace is kept.
    """
    import torch_pruning as tp

    from ..rules import find_attention, hidden_group, rule_groups

    names = {mod: name for name, mod in model.named_modules()}
    modes = {mod: mod.training for mod in model.modules()}
    inputs, forward = trace_call(example_inputs)
    analysis = GroupAnalysis()
    claimed: set[str] = set()
    for g in rule_groups(model):
        analysis.groups[g.id] = g
        for p in g.producers:
            analysis.by_module.setdefault(p, []).append(g.id)
        claimed.update(g.producers)
    specs, analysis.refused = find_attention(model)
    cached = snapshot_caches(model)
    try:  # the residual stream (granularity 'hidden'): a few probe forwards, bounded, in eval mode
        with time_bound(timeout):
            model.eval()
            one = _first_sample(inputs)  # zeros in a few channels show on one sample as on many
            hidden, analysis.hidden_error = hidden_group(model, lambda m: _call(m, one), specs)
    except TraceTimeout:
        hidden, analysis.hidden_error = None, f"hidden size: the probe did not finish within {timeout:g} s"
    except Exception as e:
        hidden, analysis.hidden_error = None, f"hidden size: running the model failed ({type(e).__name__}: {e})"
    finally:
        for mod, flag in modes.items():
            mod.training = flag
        restore_caches(model, cached)
    if hidden is not None:
        analysis.groups[hidden.id] = hidden
        for p in hidden.producers:
            analysis.by_module.setdefault(p, []).append(hidden.id)
        claimed.update(hidden.producers)  # their outputs are the stream: no traced group of their own
    from ..branches import find_branches

    try:  # the `layer` granularity's units (torch.fx: symbolic, no forward, leaving no Proxy cached; bounded)
        with time_bound(timeout):
            found, analysis.branch_error = find_branches(model)
    except TraceTimeout:
        found, analysis.branch_error = [], f"torch.fx tracing did not finish within {timeout:g} s and was stopped"
    for b in found:
        analysis.branches[b.id] = b
        for mname in b.modules:
            analysis.branches_of.setdefault(mname, []).append(b.id)
    for name, mod in model.named_modules():  # our own rules, no tracing: attention heads, recurrent hidden units
        own = _head_groups(name, mod) if isinstance(mod, nn.MultiheadAttention) else []
        own += _rnn_groups(name, mod) if isinstance(mod, nn.RNNBase) else []
        for g in own:
            analysis.groups[g.id] = g
            analysis.by_module.setdefault(name, []).append(g.id)
    cached = snapshot_caches(model)
    hooks = {m: (set(m._forward_hooks), set(m._forward_pre_hooks)) for m in model.modules()}
    try:
        try:
            with time_bound(timeout):  # the bound covers Torch-Pruning only, never the restoring below
                model.eval()
                with torch.enable_grad():
                    dg = tp.DependencyGraph().build_dependency(
                        model,
                        example_inputs=inputs,
                        forward_fn=forward,
                        customized_pruners=custom_pruners(model),
                        verbose=False,
                    )
                _tp_groups(dg, model, names, claimed, analysis)
        finally:
            for mod, flag in modes.items():
                mod.training = flag
            restore_caches(model, cached)
            for mod, (fwd, pre) in hooks.items():  # a trace stopped mid-forward leaves its hooks: drop them
                for k in [k for k in mod._forward_hooks if k not in fwd]:
                    del mod._forward_hooks[k]
                for k in [k for k in mod._forward_pre_hooks if k not in pre]:
                    del mod._forward_pre_hooks[k]
    except TraceTimeout:
        analysis.error = (
            f"Torch-Pruning's dependency graph did not finish within {timeout:g} s and was stopped; coupled channels "
            "outside the transformer rules (attention heads, MLP neurons) are known only where it got to"
        )
    except Exception as e:
        analysis.error = f"tracing the model with Torch-Pruning failed ({type(e).__name__}: {e})"
    return analysis
