"""Exact sensitivity points: the metric change when one row is pruned to one ratio, on the live model's structural
clones (the model is never written to).

`PointEvaluator` builds what every point shares once (the torch.fx suffix runner with its cached activations, the
baseline). With ``engine="batched"`` it evaluates a row at several ratios in one pass: the pruned layer runs once
per variant on its cached input (the very call a one-point evaluation makes), the outputs are stacked along a new
leading dimension and the part of the network downstream runs once for all of them (shared weights and cached
activations elsewhere), so the Python work of re-running the suffix is paid once per row chunk instead of once per
point, and each op sees a V-times larger batch. Convolutions, batch norms in eval mode, pooling, linear layers and
elementwise ops run on the variants folded into the batch (each sample computed as before: on the demos the values
equal one-point evaluation bitwise); any other node runs under a `torch.func.vmap` of its own, and a pass with a node
neither way can run (an in-place write across the variant dimension, say) runs the whole suffix under one vmap
(values to float32 rounding; vmap's batching rules cost 1.3x on a convolution and 4.5x on a batch norm, measured).
On a CPU a pass takes at most `CPU_VARIANTS` ratios (beyond that its activations outgrow the caches). Whether batching is faster depends on the model and the machine: on a 2-core
CPU, 1.0-1.6x on the test zoo's CNNs and the demos, 0.8-1.0x on the demo LSTM. So ``engine="auto"`` measures it
once per scan: on the first row of four or more ratios it times two points one at a time, then a batched pass over
the next ratios, and batches the remaining rows if that was faster per point by `BATCH_GAIN` (``engine="suffix"``:
one point per pass, bitwise reproducible).
Models or ops vmap cannot batch fall back to one point at a time (under ``"auto"``, for the rest of the scan).
"""

from __future__ import annotations

import contextlib
import math
import operator
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.fx as fx
from torch import Tensor, nn
from torch.utils._pytree import tree_flatten, tree_map, tree_unflatten

from ..evaluate import MetricLike
from ._graph import SuffixRunner, clone_with, full_outputs, masked_params
from ._replay import ReplayRunner

__all__ = ["PointEvaluator"]

STACK_BYTES = 256 << 20  # stacked masked tensors of one batched pass, at most
ACTIVATION_BYTES = 1 << 30  # re-run activations of one batched pass (all batches of the data), at most
# `engine="auto"` builds the replay engine only where the first batch's forward (with the order pass's hooks) takes
# this long: below it, a point's fixed costs (its structural clone, the copies of replayed outputs) are about what
# replay saves, so building, checking and timing it costs more than it gives (measured on the test zoo's 26 Hugging
# Face models, 5-30 ms: replay 0.8-1.3x full forwards, dropped below 1.2x on most)
REPLAY_MIN_SECONDS = 0.02
# `engine="auto"` batches a row's ratios (suffix engine) when a batched pass took at most this share of a one-point
# pass's time per point, on the row it was timed on: a margin over timing noise (a point takes milliseconds on small
# models), and a scan that gains little keeps one point per pass, whose values do not depend on the batch
BATCH_GAIN = 0.9
# ratios per batched pass on a CPU, at most: more stop paying once one pass's activations outgrow the caches (2-core
# CPU, whole exact scans against one point per pass, 3/5/9 ratios per pass, runs in rotating order, medians of 3-6:
# digits-resnet weight 1.56/1.63/1.36x, filter 1.43/1.47/1.61x, a plain 20-layer CNN 1.33/1.23/0.92x, the demo
# transformer 1.03/1.17/1.23x, three of the test zoo's CNNs, whose passes are short, 1.22-1.49/1.46-1.77/1.67-2.07x;
# the same comparisons in a fixed order moved by up to a quarter). Accelerators: the memory bounds alone
CPU_VARIANTS = 5


class PointEvaluator:
    """`(i, j) -> metric change` for rows `rows` at `ratios`. Use inside `eval_mode(model)`. `first`: the rows the
    caller measures first (an estimate's trust cells), where the replay engine times itself."""

    def __init__(self, bench, rows, ratios, data, metric: MetricLike, engine: str = "auto", client=None, first=()):
        from .sensitivity import AnalysisError, WorkbenchError

        self.model, self.adapter = bench.model, bench.adapter
        self.rows, self.ratios, self.data, self.metric = rows, np.asarray(ratios, dtype=float), data, metric
        self.runner: SuffixRunner | ReplayRunner | None = None
        # True: batch a row's ratios; False: one point per pass; None (auto): not decided yet (`_timed`)
        self.batched: bool | None = True if engine == "batched" else (None if engine == "auto" else False)
        self.auto = engine == "auto"
        self._timing = threading.Lock()
        if engine in ("auto", "suffix", "batched") and isinstance(metric, str) and client is None:
            try:
                self.runner = SuffixRunner(self.model, data, adapter=self.adapter)
            except Exception as e:  # fx cannot trace every model; the fallbacks are exact too
                if engine in ("suffix", "batched"):
                    raise WorkbenchError(f"the suffix engine cannot run this model: {e}") from e
        if self.runner is None and engine in ("auto", "replay") and isinstance(metric, str) and client is None:
            try:  # keyword inputs, control flow: replay the module calls that end before the pruned layer
                self.runner = ReplayRunner(
                    self.model, data, [r.members for r in rows], adapter=self.adapter, first=first,
                    min_seconds=REPLAY_MIN_SECONDS if engine == "auto" else 0.0,
                )  # fmt: skip
            except KeyboardInterrupt:
                raise
            except Exception as e:  # over its memory bound, or no replay reproduces the model
                if engine == "replay":
                    raise WorkbenchError(f"the replay engine cannot run this model: {e}") from e
            if engine == "auto" and isinstance(self.runner, ReplayRunner) and self.runner.speedup <= 1.2:
                self.runner = None  # small models: copying the module tree costs more than the skipped layers
        if not isinstance(self.runner, SuffixRunner):
            self.batched = False  # only the suffix engine batches
        self.baseline = self._measure({}) if client is None else self._baseline_full()
        if not math.isfinite(self.baseline):
            raise AnalysisError(f"the metric is {self.baseline} on the unpruned model; it must be a finite number")

    @property
    def engine(self) -> str:
        if self.runner is None:
            return "full forward on structural clones"
        if isinstance(self.runner, ReplayRunner):
            return "replay (recorded outputs of the module calls before the pruned layer)"
        return "suffix (torch.fx, cached activations" + (", a row's ratios batched per pass)" if self.batched else ")")

    # one point ----------------------------------------------------------------------------------
    def _baseline_full(self) -> float:
        from .sensitivity import _metric_value

        if isinstance(self.metric, str):
            return _metric_value(self.adapter, full_outputs(self.model, {}, self.data, self.adapter), self.metric)
        return float(self.metric(self.model, self.data))

    def _measure(self, params: dict[str, Tensor]) -> float:
        from .sensitivity import _metric_value

        if self.runner is not None:
            return _metric_value(self.adapter, self.runner.outputs(params), self.metric)
        if isinstance(self.metric, str):
            return _metric_value(self.adapter, full_outputs(self.model, params, self.data, self.adapter), self.metric)
        return float(self.metric(clone_with(self.model, params).eval(), self.data))

    def _check(self, i: int, j: int, value: float) -> float:
        from .sensitivity import AnalysisError

        if not math.isfinite(value):
            raise AnalysisError(
                f"the metric returned {value} for layer {self.rows[i].label!r} at ratio {self.ratios[j]:g}"
            )
        return value - self.baseline

    def point(self, i: int, j: int) -> float:
        params = masked_params(self.model, self.rows[i].ranking.masks(float(self.ratios[j])))
        return self._check(i, j, self._measure(params))

    # several ratios of one row --------------------------------------------------------------------
    def chunks(self, i: int, js: Sequence[int], timing: bool = False) -> list[list[int]]:
        """`js` split into groups that one batched pass evaluates within the memory bounds (and `CPU_VARIANTS` on a
        CPU); while ``engine="auto"`` has not decided whether to batch, one point per group unless `timing`: then
        the first group is the one it is timed on, two points more than a batched pass takes (see `points`)."""
        if not isinstance(self.runner, SuffixRunner) or not (self.batched or timing) or len(js) < 2:
            return [[j] for j in js]
        masks = self.rows[i].ranking.masks(float(self.ratios[js[0]]))
        per = sum(self.model.get_parameter(n).nbytes for n in masks)
        _, _, order = self.runner.plan(masked_params(self.model, masks))
        act = sum(env[n].nbytes for env, _, _ in self.runner.cache for n in order if isinstance(env.get(n), Tensor))
        v = max(1, min(len(js), STACK_BYTES // max(per, 1), ACTIVATION_BYTES // max(act, 1)))
        if next((p.device.type for p in self.model.parameters()), "cpu") == "cpu":
            v = min(v, CPU_VARIANTS)
        if timing:
            return [list(js[: v + 2])] + [list(js[k : k + v]) for k in range(v + 2, len(js), v)]
        return [list(js[k : k + v]) for k in range(0, len(js), v)]

    def points(self, i: int, js: Sequence[int]) -> list[float]:
        """Metric changes of row `i` at ratios `js` (one batched pass when the suffix engine batches; see the module
        docstring for how ``engine="auto"`` decides)."""
        if len(js) == 1 or not isinstance(self.runner, SuffixRunner) or self.batched is False:
            return [self.point(i, j) for j in js]
        if self.batched is None and len(js) >= 4 and self._timing.acquire(blocking=False):
            try:  # auto, not decided: one thread times it, the others go one point at a time meanwhile
                if self.batched is None:
                    return self._timed(i, js)
            finally:
                self._timing.release()
        if not self.batched:  # not decided (being timed elsewhere, or too few ratios to time) or decided against
            return [self.point(i, j) for j in js]
        return self._batched(i, js)

    def _timed(self, i: int, js: Sequence[int]) -> list[float]:
        """Row `i` at `js`: two points one at a time, then the rest in one batched pass; decides `batched` for the
        rest of the scan (batched if its time per point was at most `BATCH_GAIN` of the faster single point's)."""
        values, single = [], math.inf
        for j in js[:2]:
            t = time.perf_counter()
            values.append(self.point(i, j))
            single = min(single, time.perf_counter() - t)
        t = time.perf_counter()
        values += self._batched(i, js[2:])
        if self.batched is None:  # (a failed batched pass has set it to False)
            self.batched = (time.perf_counter() - t) / (len(js) - 2) <= BATCH_GAIN * single
        return values

    def _batched(self, i: int, js: Sequence[int]) -> list[float]:
        variants = [masked_params(self.model, self.rows[i].ranking.masks(float(self.ratios[j]))) for j in js]
        try:
            with _quiet_fallback() if self.auto else contextlib.nullcontext():
                outs = _batched_outputs(self.runner, variants)
        except (KeyboardInterrupt, MemoryError):
            raise
        except Exception:  # no batching rule for an op of the suffix: one point at a time (same values)
            if self.batched is None:
                self.batched = False  # auto: not for the other rows either
            return [self.point(i, j) for j in js]
        from .sensitivity import _metric_value

        values = []
        for v, j in enumerate(js):
            pick = lambda t, v=v: t[v] if isinstance(t, Tensor) else t  # noqa: E731
            per_batch = ((tree_map(pick, out), x, y) for out, (_, x, y) in zip(outs, self.runner.cache))
            values.append(self._check(i, j, _metric_value(self.adapter, per_batch, self.metric)))
        return values


_quiet = threading.Lock()
_quiet_depth = 0


@contextlib.contextmanager
def _quiet_fallback():
    """vmap warns when an op of the batched pass has no batching rule (it loops over the variants instead): under
    ``engine="auto"`` the pass is timed against one point per pass and kept only where faster, so the warning asks
    nothing of the user. torch's switch is process-wide: counted across threads, back on when the last pass ends."""
    global _quiet_depth
    switch = getattr(torch._C._functorch, "_set_vmap_fallback_warning_enabled", None)
    if switch is None:
        yield
        return
    with _quiet:
        _quiet_depth += 1
        switch(False)
    try:
        yield
    finally:
        with _quiet:
            _quiet_depth -= 1
            if _quiet_depth == 0:
                switch(True)


def _batched_outputs(runner: SuffixRunner, variants: list[dict[str, Tensor]]) -> list[Any]:
    """Per cached batch, the model's output for every variant (stacked along a new leading dimension): the nodes
    downstream of the variants' tensors run once, on the variants folded into the batch where that is the same
    computation, else under a vmap per node (`explicit`); where that fails, all of them under one vmap (`run`)."""
    from torch.func import functional_call, vmap

    names = list(variants[0])
    if any(list(v) != names for v in variants):
        raise ValueError("variants must replace the same tensors")
    stacked = {n: torch.stack([v[n] for v in variants]) for n in names}
    leaf_of: dict[str, tuple[str, str]] = {}
    attrs = set()
    for n in names:
        if n in runner.attrs:
            attrs.add(n)
            continue
        leaf = runner._leaf_of(n)
        if leaf is None:
            raise LookupError(f"parameter {n!r} is not reached by any traced module call")
        leaf_of[n] = (leaf, n[len(leaf) + 1 :])
    _, _, order = runner.plan(variants[0])
    position = {node: k for k, node in enumerate(order)}
    last: dict[fx.Node, int] = {}
    for k, node in enumerate(order):  # free a re-run value after its last use in the suffix
        for a in node.all_input_nodes:
            if a in position:
                last[a] = k
    keep = set(runner.output.all_input_nodes)
    interp = fx.Interpreter(runner.gm, garbage_collect_values=False)

    # modules re-run on cached inputs only (the pruned layer itself) run per variant outside vmap, exactly the
    # call a one-point evaluation makes; vmap batches what runs downstream of them
    entry = [
        n
        for n in order
        if n.op == "call_module" and n.target in {leaf for leaf, _ in leaf_of.values()}
        and not any(a in position for a in n.all_input_nodes)
    ]  # fmt: skip
    clones: dict[str, list[nn.Module]] = {}
    for node in entry:
        per_variant = []
        for v in variants:
            mine = {rel: v[n] for n, (leaf, rel) in leaf_of.items() if leaf == node.target}
            per_variant.append(clone_with(runner.gm.get_submodule(node.target), mine).eval())
        clones[node.target] = per_variant

    # functional_call swaps a module's tensors for the call: on a structural clone, never on the live module (other
    # points running on the thread pool read it meanwhile)
    own = {leaf: clone_with(runner.gm.get_submodule(leaf), {}).eval() for leaf, _ in leaf_of.values()}

    def by_leaf(tensors: dict[str, Tensor]) -> dict[str, dict[str, Tensor]]:
        """The variants' tensors grouped by the module that owns them (names relative to it)."""
        out: dict[str, dict[str, Tensor]] = {}
        for n, (leaf, rel) in leaf_of.items():
            out.setdefault(leaf, {})[rel] = tensors[n]
        return out

    def run(stk: dict[str, Tensor], pre: dict[fx.Node, Tensor], env: dict[fx.Node, Any]) -> Any:
        per_leaf = by_leaf(stk)
        local = dict(env)
        interp.env = local
        for k, node in enumerate(order):
            if node in pre:
                local[node] = pre[node]
            elif node.op == "call_module" and node.target in per_leaf:
                args, kwargs = interp.fetch_args_kwargs_from_env(node)
                local[node] = functional_call(own[node.target], per_leaf[node.target], args, kwargs)
            elif node.op == "get_attr" and node.target in attrs:
                local[node] = stk[node.target]
            else:
                local[node] = interp.run_node(node)
            for a in node.all_input_nodes:
                if last.get(a) == k and a not in keep:
                    local.pop(a, None)
        return fx.node.map_arg(runner.output.args[0], lambda n: local[n])

    stacked_by_leaf = by_leaf(stacked)

    def explicit(pre: dict[fx.Node, Tensor], env: dict[fx.Node, Any]) -> Any:
        """`run` without one vmap around it: values that depend on the variants carry them as a leading dimension,
        and each node runs on it directly where that is the same computation (`_on_variants`), else under a vmap of
        its own. Raises where it cannot tell (the caller then runs `run` under vmap)."""
        local = dict(env)
        interp.env = local
        batched: set[fx.Node] = set()
        for k, node in enumerate(order):
            if node in pre:
                local[node] = pre[node]
                batched.add(node)
            elif node.op == "get_attr" and node.target in attrs:
                local[node] = stacked[node.target]
                batched.add(node)
            elif node.op == "call_module" and node.target in stacked_by_leaf:
                local[node] = _vmapped(node, local, batched, own[node.target], stacked_by_leaf[node.target])
                batched.add(node)
            elif not any(a in batched for a in node.all_input_nodes):
                local[node] = interp.run_node(node)
            else:
                got = _on_variants(node, local, batched, runner.gm)
                if got is _NOT_BATCHED:
                    mod = runner.gm.get_submodule(node.target) if node.op == "call_module" else None
                    local[node] = _vmapped(node, local, batched, mod, None)
                    batched.add(node)
                elif isinstance(got, _Plain):  # a shape or size: the same for every variant
                    local[node] = got.value
                else:
                    local[node] = got
                    batched.add(node)
            for a in node.all_input_nodes:
                if last.get(a) == k and a not in keep:
                    local.pop(a, None)
        v = len(variants)
        return fx.node.map_arg(
            runner.output.args[0],
            lambda n: local[n] if n in batched else tree_map(lambda t: _spread(t, v), local[n]),
        )

    outs, folding = [], True
    with torch.inference_mode():
        for env, _, _ in runner.cache:
            interp.env = env
            pre = {}
            for node in entry:
                args, kwargs = interp.fetch_args_kwargs_from_env(node)
                pre[node] = torch.stack([m(*args, **kwargs) for m in clones[node.target]])
            if folding:
                try:
                    outs.append(explicit(pre, env))
                    continue
                except (KeyboardInterrupt, MemoryError):
                    raise
                except Exception:  # an op whose batching it cannot tell: the whole suffix under one vmap, also
                    folding = False  # for the other batches (they run the same nodes)
            fn = vmap(lambda stk, pre, env=env: run(stk, pre, env), randomness="error")
            outs.append(fn(stacked, pre))
    return outs


# Modules that treat dimension 0 as the batch and each sample alone (in eval mode), called on the variants folded
# into the batch: (module types, the input's number of dimensions with its batch dimension)
_FOLDED = (
    ((nn.Conv1d, nn.MaxPool1d, nn.AvgPool1d, nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool1d), (3,)),
    ((nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d), (4,)),
    ((nn.Conv3d, nn.MaxPool3d, nn.AvgPool3d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool3d), (5,)),
    ((nn.BatchNorm1d,), (2, 3)),
    ((nn.BatchNorm2d,), (4,)),
    ((nn.BatchNorm3d,), (5,)),
)
# Modules and functions that act on each element, or on the last dimensions only: a leading variant dimension is
# one more batch dimension to them
_ANY_LEADING = (
    nn.Linear, nn.LayerNorm, nn.Identity, nn.Dropout, nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh,
    nn.Hardswish, nn.Hardsigmoid, nn.LeakyReLU, nn.ELU, nn.Mish, nn.Softplus,
)  # fmt: skip
_ELEMENTWISE = {
    operator.add, operator.sub, operator.mul, operator.truediv, operator.iadd, operator.isub, operator.imul,
    torch.add, torch.sub, torch.mul, torch.div, torch.relu, torch.sigmoid, torch.tanh,
    nn.functional.relu, nn.functional.relu6, nn.functional.gelu, nn.functional.silu, nn.functional.sigmoid,
    nn.functional.hardswish, nn.functional.leaky_relu,
}  # fmt: skip
_NOT_BATCHED = object()


class _Plain:
    """A node's value that does not depend on the variant (a shape, a size)."""

    def __init__(self, value: Any) -> None:
        self.value = value


def _spread(t: Any, v: int) -> Any:
    """An output that does not depend on the variants, given the leading variant dimension the others have."""
    return t.unsqueeze(0).expand(v, *t.shape) if isinstance(t, Tensor) else t


def _on_variants(node: fx.Node, local: dict, batched: set, gm: nn.Module) -> Any:
    """`node` run on values with a leading variant dimension where that is the same as running it per variant (see
    `_FOLDED`, `_ANY_LEADING`, `_ELEMENTWISE`; shapes and sizes read off the first variant), else `_NOT_BATCHED`."""
    args = fx.node.map_arg(node.args, lambda n: local[n])
    kwargs = fx.node.map_arg(node.kwargs, lambda n: local[n])
    if node.op == "call_module":
        mod = gm.get_submodule(node.target)
        if mod.training or len(args) != 1 or kwargs or not isinstance(args[0], Tensor):
            return _NOT_BATCHED
        x = args[0]
        if type(mod) in _ANY_LEADING:  # exact types: a subclass may do anything in its forward
            return mod(x)
        for kinds, dims in _FOLDED:
            if type(mod) in kinds and x.dim() - 1 in dims:
                if isinstance(mod, nn.modules.batchnorm._BatchNorm) and mod.running_mean is None:
                    return _NOT_BATCHED  # batch statistics even in eval mode: the samples are not independent
                if getattr(mod, "return_indices", False):
                    return _NOT_BATCHED
                y = mod(x.flatten(0, 1))
                return y.unflatten(0, (x.shape[0], x.shape[1])) if isinstance(y, Tensor) else _NOT_BATCHED
        return _NOT_BATCHED
    if node.op == "call_function" and node.target is operator.getitem and not isinstance(args[0], Tensor):
        if isinstance(args[0], tuple | list) and isinstance(args[1], int):  # an item of a module's tuple output
            item = args[0][args[1]]
            return item if isinstance(item, Tensor) else _Plain(item)
        return _NOT_BATCHED
    shape_of = node.op == "call_function" and node.target is getattr
    if shape_of or (node.op == "call_method" and node.target in ("size", "dim")):
        if not all(isinstance(local[n], Tensor) for n in node.all_input_nodes if n in batched):
            return _NOT_BATCHED
        first = fx.node.map_arg(node.args, lambda n: local[n][0] if n in batched else local[n])
        got = getattr(*first) if node.op == "call_function" else getattr(first[0], node.target)(*first[1:], **kwargs)
        return _NOT_BATCHED if isinstance(got, Tensor) else _Plain(got)  # x.T and the like differ per variant
    if node.op == "call_function" and node.target in _ELEMENTWISE:
        flat = [a for a in (*args, *kwargs.values()) if isinstance(a, Tensor)]
        ins = [a for a in node.all_input_nodes if a in batched]
        logical = min(local[n].dim() - 1 for n in ins)
        if len(flat) != len([a for a in (*node.args, *node.kwargs.values()) if isinstance(a, fx.Node)]):
            return _NOT_BATCHED  # a tensor nested in a container: leave it to vmap
        plain = [local[n] for n in node.all_input_nodes if n not in batched]
        if any(not isinstance(t, Tensor) or t.dim() > logical for t in plain):
            return _NOT_BATCHED  # broadcasting would line it up against the variant dimension
        return node.target(*args, **kwargs)
    return _NOT_BATCHED


def _vmapped(node: fx.Node, local: dict, batched: set, module: nn.Module | None, params: dict | None) -> Any:
    """`node` under a vmap of its own over the variant dimension of its batched inputs (and of `params`, the
    stacked tensors of a pruned module, called through functional_call on `module`, a structural clone; for other
    modules `module` is the module itself, whose tensors are not swapped)."""
    from torch.func import functional_call, vmap

    ins = [a for a in node.all_input_nodes if a in batched]

    def one(p: dict | None, *vals: Any) -> Any:
        sub = dict(zip(ins, vals))
        get = lambda n: sub[n] if n in sub else local[n]  # noqa: E731
        args, kwargs = fx.node.map_arg(node.args, get), fx.node.map_arg(node.kwargs, get)
        if node.op == "call_module":  # `module`: a structural clone with `p`'s tensors, or the unpruned module
            return functional_call(module, p, args, kwargs) if p is not None else module(*args, **kwargs)
        if node.op == "call_function":
            return node.target(*args, **kwargs)
        if node.op == "call_method":
            return getattr(args[0], node.target)(*args[1:], **kwargs)
        raise LookupError(f"cannot batch node {node.op} {node.target}")

    plain: dict[int, Any] = {}  # leaves of the output that are not tensors (an attention's None weights, a size)
    spec: list = []

    def tensors_only(p: dict | None, *vals: Any) -> tuple:
        leaves, tree = tree_flatten(one(p, *vals))
        spec.append(tree)
        plain.update({k: x for k, x in enumerate(leaves) if not isinstance(x, Tensor)})
        return tuple(torch.zeros(()) if k in plain else x for k, x in enumerate(leaves))

    dims = (tree_map(lambda x: 0 if isinstance(x, Tensor) else None, local[n]) for n in ins)
    got = vmap(tensors_only, in_dims=(0 if params is not None else None, *dims), randomness="error")(
        params, *(local[n] for n in ins)
    )
    return tree_unflatten([plain.get(k, x) for k, x in enumerate(got)], spec[0])
