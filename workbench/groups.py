"""Coupled channel groups for structured pruning, from Torch-Pruning's DependencyGraph.

Removing output channel *c* of a conv also removes *c* from the BatchNorm after it, from every layer
that reads it (their input channel *c*), and from every other layer whose output is added to or
concatenated with it. Torch-Pruning traces the model once and gives us those groups; this module turns
each group into plain slices of parameters (`Member`) so that a structured mask zeroes exactly what a
physical shrink would remove, and marks groups we cannot mask exactly as unsupported, with the reason.

Why not trust every group Torch-Pruning returns: it treats any operator it does not know as
element-wise, so channels that flow through an LSTM (traced as ``MkldnnRnnLayerBackward0`` in eval
mode) or attention are silently coupled to the wrong layers (tests/masks/test_units.py shows it: the
Linear before an LSTM gets coupled to the Linear after it, and pruning that group breaks the model). We
accept only groups whose operators are on a list of channel-wise ops and whose modules we know how to mask.

Two units get rules of our own instead (no tracing needed):

- **heads** of an `nn.MultiheadAttention` (``unit="head"``): head h is rows ``h*d:(h+1)*d`` of each of the
  q, k and v projections (and their biases, and ``bias_k``/``bias_v``) and columns ``h*d:(h+1)*d`` of
  ``out_proj``. Zeroing them makes the head's queries and keys zero (uniform attention) over zero values, so
  the head adds exactly nothing: the masked module computes what the module without that head computes.
- **hidden units** of an `nn.LSTM` / `nn.GRU` / `nn.RNN` layer (``unit="lstm-unit"``, one group per layer
  and direction): unit j is row ``g*H + j`` of every gate of ``weight_ih``/``weight_hh`` and the biases, plus
  the columns that read it (``weight_hh`` of its layer, ``weight_ih`` of the next layer). Its gate inputs are
  then zero, so with the default zero initial state its cell and hidden state stay exactly zero. Layers
  after the recurrent module that read the unit are not traced: their weights are left as they are
  (they read zeros).
"""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ._caches import restore_caches, snapshot_caches

__all__ = ["ChannelGroup", "GroupAnalysis", "Member", "TraceTimeout", "analyze_groups", "time_bound"]

# grad_fn names (without "Backward<N>") of ops that act on each channel independently (or only move
# data within a channel), so a zero channel stays a zero channel and no channel mixes with another.
CHANNELWISE_OPS = frozenset(
    """Relu Relu6 Hardtanh LeakyRelu Elu Selu Celu Gelu Silu Mish Sigmoid Tanh Hardswish Hardsigmoid Softplus
    Add Sub Mul Div Neg Clone Alias NativeDropout Dropout FeatureDropout MaxPool1DWithIndices
    MaxPool2DWithIndices MaxPool3DWithIndices AvgPool1D AvgPool2D AvgPool3D AdaptiveAvgPool1D
    AdaptiveAvgPool2D AdaptiveAvgPool3D AdaptiveMaxPool1D AdaptiveMaxPool2D AdaptiveMaxPool3D Mean
    ConstantPadNd ReflectionPad1D ReflectionPad2D ReplicationPad1D ReplicationPad2D UpsampleNearest1D
    UpsampleNearest2D UpsampleBilinear2D Addmm Mm T Expand Contiguous NativeBatchNorm""".split()
)
# NativeBatchNorm as an op node is a batch norm inside a module Torch-Pruning maps to another op (timm's
# BatchNormAct2d: its output is the activation's): per channel in eval mode; its own parameters come from the module
# node (`custom_pruners`), and every consumer's input slice is in the group, so masking stays exact.
_NORM_EXACT = (nn.modules.batchnorm._BatchNorm,)
_NORM_INEXACT = (nn.LayerNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm)


@dataclass(frozen=True)
class Member:
    """Positions `index` along `dim` of parameter `param` belong to root channels `root`."""

    param: str
    dim: int
    index: Tensor
    root: Tensor
    producer: bool = False  # an output-channel slice of a conv/linear weight: used to score the channel


@dataclass(frozen=True)
class ChannelGroup:
    """Channels that must be pruned together; `size` root channels, `producers` the layers whose outputs
    they are (their filters/neurons), `members` every parameter slice they touch."""

    id: str
    size: int
    producers: tuple[str, ...]
    members: tuple[Member, ...]
    reason: str = ""  # non-empty: this group cannot be masked exactly, and why
    unit: str = "channel"  # "channel" (filters/neurons, removable by Torch-Pruning), "head" or "lstm-unit"
    origin: str = "trace"  # "trace" (Torch-Pruning's graph), "rules" (workbench.rules: sliced by its members) or "own"
    blocks: int = 1  # through grouped convs: unit p is channel p of each of `blocks` equal blocks (`channels`)
    modules: tuple[str, ...] = ()  # head groups spanning several attention modules (T5's stacks): their names

    def channels(self, units: list[int]) -> list[int]:
        """The root module's output channels that root units `units` stand for."""
        return sorted(p + k * self.size for k in range(self.blocks) for p in units)

    @property
    def supported(self) -> bool:
        return not self.reason

    def masks(self, pruned: Tensor, shapes: dict[str, torch.Size]) -> dict[str, Tensor]:
        """Boolean masks (True = remove) for the root channels flagged in `pruned` (bool, [size])."""
        out: dict[str, Tensor] = {}
        for m in self.members:
            pos = m.index[pruned[m.root]]
            if pos.numel() == 0:
                continue
            mask = out.get(m.param)
            if mask is None:
                mask = out[m.param] = torch.zeros(shapes[m.param], dtype=torch.bool)
            mask.index_fill_(m.dim, pos, True)
        return out


@dataclass
class GroupAnalysis:
    """All groups of a model and, per module name, the ids of the groups it produces channels for."""

    groups: dict[str, ChannelGroup] = field(default_factory=dict)
    by_module: dict[str, list[str]] = field(default_factory=dict)
    error: str = ""  # tracing failed as a whole: no filter/neuron pruning on this model, and why (heads and
    # recurrent units have rules of their own and stay available)
    branches: dict[str, Any] = field(default_factory=dict)  # residual branches (`workbench.branches.Branch`) by id
    branches_of: dict[str, list[str]] = field(default_factory=dict)  # module name -> ids of branches holding it
    branch_error: str = ""  # why there are no branches when torch.fx could not trace the model
    refused: dict[str, str] = field(default_factory=dict)  # modules that look like attention but fit no rule, and why
    hidden_error: str = ""  # why a transformer has no 'hidden' group (empty: it has one, or it is no transformer)


class TraceTimeout(BaseException):
    """Raised inside a bounded trace when its time is up. A BaseException (like KeyboardInterrupt), so the traced
    code's ``except Exception`` cannot swallow it; it is raised again every half second until the block ends."""


@contextmanager
def time_bound(seconds: float | None) -> Iterator[None]:
    """Raise `TraceTimeout` in this thread if the block runs longer than `seconds` (None: no bound).

    A watchdog thread raises the exception asynchronously in the traced thread (`PyThreadState_SetAsyncExc`), so a
    pure-Python loop that never returns is stopped at its next bytecode; a pending exception is cleared when the
    block ends first.
    """
    if seconds is None:
        yield
        return
    import ctypes

    tid = threading.get_ident()
    lock = threading.Lock()
    running = [True]

    stop = threading.Event()

    def fire() -> None:
        if stop.wait(seconds):
            return
        while True:
            with lock:
                if not running[0]:
                    return
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(tid), ctypes.py_object(TraceTimeout))
            if stop.wait(0.5):  # raised again if something in the block caught it and went on
                return

    # the exception can land in a weakref callback or __del__ that runs meanwhile, where Python can only report it
    # as "Exception ignored in ..."; it is raised again half a second later anyway, so such reports are dropped
    previous = sys.unraisablehook

    def unraisable(info) -> None:
        if not (isinstance(info.exc_type, type) and issubclass(info.exc_type, TraceTimeout)):
            previous(info)

    sys.unraisablehook = unraisable
    timer = threading.Thread(target=fire, name="workbench: trace time bound", daemon=True)
    timer.start()
    try:
        yield
    finally:
        with lock:
            running[0] = False
            stop.set()
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(tid), None)  # clear one not delivered yet
        if sys.unraisablehook is unraisable:
            sys.unraisablehook = previous


def _op_name(node) -> str:
    m = re.search(r"\((\w+?)(Backward\d*)?\)$", node.name)
    return m.group(1) if m else node.name


def traced_output(out: Any) -> Any:
    """What Torch-Pruning traces back from: a tensor or a tuple of tensors as the model returns them; of a dict,
    ModelOutput or nested output (caches, hidden states) its predictions (`workbench.adapter.logits_of`)."""
    if isinstance(out, Tensor) or (isinstance(out, (list, tuple)) and all(isinstance(v, Tensor) for v in out)):
        return out
    from .adapter import logits_of

    return logits_of(out)


def custom_pruners(model: nn.Module) -> dict[type, Any]:
    """Torch-Pruning pruners for subclasses of the layers it knows (it looks layers up by exact type): timm's
    ``BatchNormAct2d`` is a BatchNorm2d whose forward also applies the activation; without this its channels look
    like an unknown op ('NativeBatchNorm') and every conv before it loses structured pruning."""
    import torch_pruning as tp

    f = tp.pruner.function
    known = (
        (nn.modules.batchnorm._BatchNorm, f.BatchnormPruner),
        (nn.LayerNorm, f.LayernormPruner),
        (nn.GroupNorm, f.GroupNormPruner),
    )
    out: dict[type, Any] = {}
    exact = {nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.LayerNorm, nn.GroupNorm}
    for m in model.modules():
        if type(m) in exact or type(m) in out:
            continue
        for base, pruner in known:
            if isinstance(m, base):
                out[type(m)] = pruner()
                break
    return out


def trace_call(example_inputs: Any) -> tuple[Any, Callable[[nn.Module, Any], Any]]:
    """Torch-Pruning's `example_inputs` and `forward_fn` for inputs given as a tensor, a tuple of positional inputs
    or a dict of keyword inputs."""
    if isinstance(example_inputs, Mapping):
        return dict(example_inputs), lambda m, x: traced_output(m(**x))
    inputs = tuple(example_inputs) if isinstance(example_inputs, (list, tuple)) else (example_inputs,)
    return inputs, lambda m, x: traced_output(m(*x))


def _first_sample(inputs: Any) -> Any:
    from .adapter import take

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

    from .rules import find_attention, hidden_group, rule_groups

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
    from .branches import find_branches

    cached = snapshot_caches(model)
    try:  # the `layer` granularity's units (torch.fx: symbolic, no forward; bounded like the trace below)
        with time_bound(timeout):
            found, analysis.branch_error = find_branches(model)
    except TraceTimeout:
        found, analysis.branch_error = [], f"torch.fx tracing did not finish within {timeout:g} s and was stopped"
    finally:  # a model caching on its first call may have kept torch.fx Proxies
        restore_caches(model, cached)
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


def _tp_groups(dg, model: nn.Module, names, claimed: set[str], analysis: GroupAnalysis) -> None:
    """Add Torch-Pruning's coupled groups to `analysis`, skipping channels a module-tree rule already covers."""
    params = {p: n for n, p in model.named_parameters()}
    shapes = {n: p.shape for n, p in model.named_parameters(remove_duplicate=False)}
    seen: set[nn.Module] = set()
    for mod in list(dg.module2node):
        if not isinstance(mod, (nn.Linear, nn.modules.conv._ConvNd)) or mod in seen or mod not in names:
            continue
        if names[mod] in claimed:
            continue  # its output channels are a rule's (heads, MLP neurons): no need to ask the graph
        pruner = dg.get_pruner_of_module(mod)
        n = pruner.get_out_channels(mod) if pruner is not None else None
        if not n:
            continue
        group = dg.get_pruning_group(mod, pruner.prune_out_channels, list(range(n)))
        members: list[Member] = []
        producers: list[str] = []
        reasons: list[str] = []
        grouped: list[tuple[str, int, int, Tensor, Tensor]] = []  # (name, groups, channels per group, idx, root)
        for item in group:
            dep, node = item.dep, item.dep.target
            out = dg.is_out_channel_pruning_fn(dep.handler)
            idx = torch.as_tensor(item.idxs, dtype=torch.long)
            root = torch.as_tensor(item.root_idxs, dtype=torch.long)
            target = node.module
            if isinstance(target, nn.modules.conv._ConvNd) and target.groups > 1 and target in names:
                if not target.groups == target.in_channels == target.out_channels:  # grouped, not depthwise
                    per = (target.out_channels if out else target.in_channels) // target.groups
                    grouped.append((names[target], target.groups, per, idx, root))
            if out and isinstance(target, (nn.Linear, nn.modules.conv._ConvNd)):
                seen.add(target)
            if out and not node.outputs:
                reasons.append(f"its channels are outputs of the model (at {names.get(target, node.name)!r})")
            if out and isinstance(target, (nn.Linear, nn.modules.conv._ConvNd)):
                producers.append(names[target])
            got = _members(target, names, params, node, out, idx, root)
            if isinstance(got, str):
                reasons.append(got)
            else:
                members.extend(got)
        gid = names[mod]
        if claimed.intersection(producers) or gid in analysis.groups:
            continue  # a module-tree rule covers these channels exactly
        size, blocks = n, 1
        if grouped and not reasons:
            size, blocks, why = _per_group_units(n, grouped)
            if why:
                reasons.append(why)
            else:
                members = [Member(m.param, m.dim, m.index, m.root % size, m.producer) for m in members]
        for m in members:  # Torch-Pruning's index mapping through split/concat can point past a tensor's end
            if m.index.numel() and (int(m.index.max()) >= shapes[m.param][m.dim] or int(m.root.max()) >= size):
                reasons.append(
                    f"Torch-Pruning maps its channels onto positions {int(m.index.max())} of {m.param!r} (size "
                    f"{shapes[m.param][m.dim]}) through a split/concat it does not follow exactly; structured pruning of it is not "
                    "supported yet"
                )
                break
        cg = ChannelGroup(gid, size, tuple(producers), tuple(members), "; ".join(dict.fromkeys(reasons)), blocks=blocks)
        analysis.groups[gid] = cg
        for p in producers:
            analysis.by_module.setdefault(p, []).append(gid)


def _per_group_units(n: int, grouped: list[tuple[str, int, int, Tensor, Tensor]]) -> tuple[int, int, str]:
    """``(units, blocks, why not)`` of a group of `n` channels through grouped convs: a grouped conv keeps as many
    channels in each of its groups, so (as Torch-Pruning does) a unit is one position inside a group, removed from
    every group at once: unit p is channels ``p, p + units, p + 2 * units, ...``."""
    blocks = {g for _, g, _, _, _ in grouped}
    name, g, per, _, _ = grouped[0]
    if len(blocks) > 1:
        return n, 1, f"its channels reach grouped convs with different numbers of groups ({sorted(blocks)})"
    if n % g or n // g != per:
        return n, 1, f"its {n} channels do not split into the {g} groups of grouped conv {name!r} one to one"
    for name, _, per, idx, root in grouped:
        if not torch.equal(idx % per, root % per):
            return (
                n,
                1,
                (
                    f"its channels reach grouped conv {name!r} in another order (through a concat or split): removing "
                    "the same positions from each of its groups is not supported there yet"
                ),
            )
    return n // g, g, ""


def _members(target, names, params, node, out: bool, idx: Tensor, root: Tensor) -> list[Member] | str:
    """Parameter slices for one dependency, or the reason it cannot be masked exactly."""
    if isinstance(target, nn.Parameter):
        name = params.get(target)
        if name is None:
            return "it reaches a tensor that is not a parameter of the model"
        return [Member(name, int(getattr(node, "pruning_dim", -1)) % target.dim(), idx, root)]
    if not isinstance(target, nn.Module):
        return ""  # unreachable with Torch-Pruning 1.x
    mname = names.get(target)
    if mname is None:  # an operator node (add, relu, cat, view, ...)
        kind = type(target).__name__
        if kind in ("_ConcatOp", "_SplitOp", "_ReshapeOp", "_SliceOp", "_UnbindOp"):
            return []
        op = _op_name(node)
        if op in CHANNELWISE_OPS:
            return []
        return f"its channels pass through {op!r}, which is not known to be channel-wise"
    pre = f"{mname}." if mname else ""
    if isinstance(target, nn.modules.conv._ConvNd):
        depthwise = target.groups == target.in_channels == target.out_channels
        dim_out, dim_in = (1, 0) if target.transposed else (0, 1)
        if target.groups > 1 and not depthwise and target.transposed:
            return f"grouped transposed conv {mname!r} (groups={target.groups}) has no structured rule yet"
        if out or depthwise:
            ms = [Member(f"{pre}weight", dim_out, idx, root, producer=out)]
            if target.bias is not None:
                ms.append(Member(f"{pre}bias", 0, idx, root))
            return ms
        if (
            target.groups > 1
        ):  # a grouped conv's weight holds in_channels / groups columns: channel c is column c % that
            return [Member(f"{pre}weight", dim_in, idx % (target.in_channels // target.groups), root)]
        return [Member(f"{pre}weight", dim_in, idx, root)]
    if isinstance(target, nn.Linear):
        if out:
            ms = [Member(f"{pre}weight", 0, idx, root, producer=True)]
            if target.bias is not None:
                ms.append(Member(f"{pre}bias", 0, idx, root))
            return ms
        return [Member(f"{pre}weight", 1, idx, root)]
    if isinstance(target, _NORM_EXACT):
        if not target.affine:
            return []
        return [Member(f"{pre}weight", 0, idx, root), Member(f"{pre}bias", 0, idx, root)]
    if isinstance(target, _NORM_INEXACT):
        return (
            f"{type(target).__name__} {mname!r} normalises over these channels, so zeroing them changes its "
            "statistics and a mask cannot match the shrunk model"
        )
    if isinstance(target, nn.Embedding) and out:
        return [Member(f"{pre}weight", 1, idx, root)]
    if isinstance(target, nn.PReLU) and target.num_parameters > 1:
        return [Member(f"{pre}weight", 0, idx, root)]
    return f"it reaches {type(target).__name__} {mname!r}, which has no structured rule yet"


def _head_groups(name: str, mha: nn.MultiheadAttention) -> list[ChannelGroup]:
    """One group whose units are the heads of `mha` (see the module docstring)."""
    pre = f"{name}." if name else ""
    e, h = mha.embed_dim, mha.num_heads
    d = e // h
    gid = f"{name}:heads"
    if h < 2:
        return [
            ChannelGroup(gid, h, (name,), (), "it has a single head: removing it would empty the layer", "head", "own")
        ]
    head = torch.arange(e) // d
    rows = torch.arange(e)
    members: list[Member] = []
    if mha.in_proj_weight is not None:
        members.append(Member(f"{pre}in_proj_weight", 0, torch.arange(3 * e), head.repeat(3), producer=True))
    else:
        for p in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
            members.append(Member(f"{pre}{p}", 0, rows, head, producer=True))
    if mha.in_proj_bias is not None:
        members.append(Member(f"{pre}in_proj_bias", 0, torch.arange(3 * e), head.repeat(3)))
    for p in ("bias_k", "bias_v"):
        if getattr(mha, p, None) is not None:
            members.append(Member(f"{pre}{p}", 2, rows, head))
    members.append(Member(f"{pre}out_proj.weight", 1, rows, head, producer=True))
    return [ChannelGroup(gid, h, (name,), tuple(members), "", "head", "own")]


_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}


def _rnn_groups(name: str, rnn: nn.RNNBase) -> list[ChannelGroup]:
    """One group per layer and direction of `rnn`, whose units are its hidden units."""
    pre = f"{name}." if name else ""
    gates, hsz = _GATES.get(rnn.mode, 0), rnn.hidden_size
    dirs = ["", "_reverse"] if rnn.bidirectional else [""]
    out = []
    for layer in range(rnn.num_layers):
        for di, sfx in enumerate(dirs):
            gid = f"{name}:l{layer}{sfx}"
            if not gates or getattr(rnn, "proj_size", 0):
                why = (
                    "LSTMs with proj_size > 0 are not supported yet"
                    if gates
                    else f"unknown recurrent mode {rnn.mode!r}"
                )
                out.append(ChannelGroup(gid, hsz, (name,), (), why, "lstm-unit", "own"))
                continue
            unit = torch.arange(gates * hsz) % hsz
            rows, cols = torch.arange(gates * hsz), torch.arange(hsz)
            members = [
                Member(f"{pre}weight_ih_l{layer}{sfx}", 0, rows, unit, producer=True),
                Member(f"{pre}weight_hh_l{layer}{sfx}", 0, rows, unit, producer=True),
            ]
            if rnn.bias:
                members += [
                    Member(f"{pre}bias_ih_l{layer}{sfx}", 0, rows, unit),
                    Member(f"{pre}bias_hh_l{layer}{sfx}", 0, rows, unit),
                ]
            members.append(Member(f"{pre}weight_hh_l{layer}{sfx}", 1, cols, cols))  # the recurrence reads it
            if layer + 1 < rnn.num_layers:  # the next layer reads it, in both of its directions
                for nxt in dirs:
                    members.append(Member(f"{pre}weight_ih_l{layer + 1}{nxt}", 1, cols + di * hsz, cols))
            out.append(ChannelGroup(gid, hsz, (name,), tuple(members), "", "lstm-unit", "own"))
    return out
