"""Targets: every prunable tensor of a live model, what kind of layer holds it and how it can be pruned.

Works on any `nn.Module`: targets are found by layer type (Linear, Conv, LSTM/GRU/RNN,
MultiheadAttention, affine norms, Embedding), named by their dotted module names exactly as
`named_modules()` prints them. Structured granularities (`neuron`, `filter`) need coupled channel
groups, which come from tracing the model once on example inputs (`workbench.groups`).
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from torch import nn

from ._text import table_lines
from .errors import ModelError, TargetError, WorkbenchWarning, suggest
from .groups import GroupAnalysis
from .rules import is_conv1d

__all__ = ["KINDS", "PATTERN_EXAMPLES", "Target", "Targets", "find_targets", "parse_pattern", "pattern_fit"]

KINDS = ("linear", "conv", "lstm", "attention", "norm", "embedding")
# patterned granularities listed in `Target.patterns` when they fit; any other "N:M" / "blockRxC" is checked on demand
PATTERN_EXAMPLES = ("2:4", "block4x4", "block16x16", "block32x32")
_NM = re.compile(r"^(\d+):(\d+)$")
_BLOCK = re.compile(r"^block(\d+)x(\d+)$")


def parse_pattern(name: object) -> tuple[str, int, int] | None:
    """``("N:M", n, m)`` or ``("block", rows, cols)`` for a patterned granularity name, else None.

    >>> parse_pattern("2:4"), parse_pattern("block16x8"), parse_pattern("filter")
    (('N:M', 2, 4), ('block', 16, 8), None)
    """
    if not isinstance(name, str):
        return None
    m = _NM.match(name)
    if m:
        return "N:M", int(m.group(1)), int(m.group(2))
    m = _BLOCK.match(name)
    if m:
        return "block", int(m.group(1)), int(m.group(2))
    return None


def pattern_fit(name: str, kind: str, module_type: str, shape: Sequence[int]) -> str:
    """Why a layer cannot take the patterned granularity `name` ("" if it can).

    N:M groups M consecutive weights along the input dimension (dim 1 of a Linear or Conv weight; for a
    conv, at each kernel position), so M must divide it. Blocks tile the weight seen as 2-D
    (out x in*kh*kw), so R must divide the rows and C the columns.

    >>> pattern_fit("2:4", "linear", "Linear", (8, 16))
    ''
    >>> pattern_fit("2:4", "linear", "Linear", (8, 10))
    'its input dimension (10) is not a multiple of 4: pad the layer to a multiple of 4 inputs or exclude it from the plan'
    """
    p = parse_pattern(name)
    if p is None:
        return f"{name!r} is not an N:M or blockRxC granularity"
    if module_type == "Conv1D":
        return (
            f"{name} is not supported on Hugging Face Conv1D layers yet (their weight is stored transposed, in x out)"
        )
    if kind not in ("linear", "conv") or module_type.startswith("ConvTranspose") or len(shape) < 2:
        return f"{name} applies to the weights of Linear and (non-transposed) Conv layers, not {module_type}"
    family, a, b = p
    if family == "N:M":
        if shape[1] % b:
            return (
                f"its input dimension ({shape[1]}) is not a multiple of {b}: pad the layer to a multiple of {b} "
                "inputs or exclude it from the plan"
            )
        return ""
    rows, cols = shape[0], math.prod(shape[1:])
    if rows % a or cols % b:
        return (
            f"its weight seen as {rows}x{cols} (out x in*kernel) is not tiled by {a}x{b} blocks: pick a block size "
            "dividing both, pad the layer or exclude it from the plan"
        )
    return ""


@dataclass(frozen=True)
class Target:
    """One prunable layer.

    `params` are its prunable parameters (local names, e.g. ``("weight",)`` or the LSTM's
    ``("weight_ih_l0", "weight_hh_l0")``); `shape` is the first one's; `granularities` those it
    supports; `groups` the coupled channel groups its filters/neurons belong to (ids are the names of
    the groups' root layers); `unsupported` says why a granularity is missing.
    """

    name: str
    kind: str
    module_type: str
    params: tuple[str, ...]
    shape: tuple[int, ...]
    numel: int
    granularities: tuple[str, ...]
    groups: tuple[str, ...] = ()
    unsupported: dict[str, str] = field(default_factory=dict, compare=False)
    tied_to: str | None = None
    patterns: tuple[str, ...] = ()  # N:M and block granularities of PATTERN_EXAMPLES that fit its shape
    branches: tuple[str, ...] = ()  # residual branches it belongs to (the `layer` granularity's units)

    def param_names(self) -> list[str]:
        """Full parameter names, e.g. ``["features.0.weight"]``."""
        return [f"{self.name}.{p}" if self.name else p for p in self.params]

    def supports(self, granularity: str) -> bool:
        """Whether this layer can be pruned by `granularity`; any ``"N:M"`` / ``"blockRxC"`` is checked
        against its shape (`pattern_fit` says why not)."""
        if granularity in self.granularities or granularity in self.patterns:
            return True
        if self.tied_to or parse_pattern(granularity) is None:
            return False
        return not pattern_fit(granularity, self.kind, self.module_type, self.shape)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "module_type": self.module_type,
            "params": list(self.params),
            "shape": list(self.shape),
            "numel": self.numel,
            "granularities": list(self.granularities),
            "groups": list(self.groups),
            "unsupported": dict(self.unsupported),
            "tied_to": self.tied_to,
            "patterns": list(self.patterns),
            "branches": list(self.branches),
        }


class Targets(Sequence[Target]):
    """An ordered, read-only list of targets that can also be indexed by name; prints as a table."""

    def __init__(self, targets: Sequence[Target]):
        self._list = tuple(targets)
        self._by_name = {t.name: t for t in self._list}

    def __len__(self) -> int:
        return len(self._list)

    def __iter__(self) -> Iterator[Target]:
        return iter(self._list)

    def __getitem__(self, key):  # type: ignore[override]
        if isinstance(key, str):
            try:
                return self._by_name[key]
            except KeyError:
                raise TargetError(f"{key!r} is not a prunable target.{suggest(key, self.names, 'target')}") from None
        return self._list[key]

    def __contains__(self, key: object) -> bool:
        return key in self._by_name if isinstance(key, str) else key in self._list

    @property
    def names(self) -> list[str]:
        return [t.name for t in self._list]

    def to_pandas(self):
        import pandas as pd

        return pd.DataFrame([t.to_dict() for t in self._list])

    def table(self) -> str:
        rows = [("name", "kind", "shape", "params", "granularities", "group")]
        for t in self._list:
            group = ",".join(t.groups) if t.groups else ("tied to " + t.tied_to if t.tied_to else "-")
            grans = " ".join(t.granularities + t.patterns)
            rows.append((t.name, t.kind, "x".join(map(str, t.shape)), f"{t.numel:,}", grans, group))
        return "\n".join(table_lines(rows))

    def __repr__(self) -> str:
        return f"Targets({len(self)} layers)\n{self.table()}"

    def _repr_html_(self) -> str:
        import html

        head = "".join(f"<th>{h}</th>" for h in ("name", "kind", "shape", "params", "granularities", "group"))
        body = "".join(
            "<tr>"
            + "".join(
                f"<td>{html.escape(str(c))}</td>"
                for c in (
                    t.name,
                    t.kind,
                    "x".join(map(str, t.shape)),
                    f"{t.numel:,}",
                    " ".join(t.granularities + t.patterns),
                    ",".join(t.groups) or "-",
                )
            )
            + "</tr>"
            for t in self._list
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _kind(module: nn.Module) -> tuple[str, tuple[str, ...]] | None:
    """(kind, prunable local parameter names) of a module, or None if it is not a target."""
    if isinstance(module, nn.Linear) or is_conv1d(module):
        return "linear", ("weight",)
    if isinstance(module, nn.modules.conv._ConvNd):
        return "conv", ("weight",)
    if isinstance(module, nn.RNNBase):
        return "lstm", tuple(n for n, _ in module.named_parameters(recurse=False) if n.startswith("weight_"))
    if isinstance(module, nn.MultiheadAttention):
        if module.in_proj_weight is not None:
            return "attention", ("in_proj_weight",)
        return "attention", ("q_proj_weight", "k_proj_weight", "v_proj_weight")
    if isinstance(module, (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)):
        return ("norm", ("weight",)) if getattr(module, "weight", None) is not None else None
    if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
        return "embedding", ("weight",)
    return None


def _units(kind: str, gids: tuple[str, ...], groups: GroupAnalysis | None) -> list[tuple[str, str]]:
    """(granularity, group unit) pairs a target of `kind` may offer, read from the granularity registry: every
    per-layer structured granularity made for this kind (its first kind: filters of convs, neurons of linears,
    heads of attention, LSTM units), one of its other kinds where the target is in a coupled group of its unit
    (``head`` for the linear projections of an attention block), and those spanning layers (``hidden``) where the
    target is in a group of their unit. Whole residual branches (``layer``) are found apart, from the branches."""
    from .masks.granularity import get_granularity, structured_granularities

    have = {groups.groups[g].unit for g in gids} if groups is not None else set()
    out = []
    for name in structured_granularities():
        g = get_granularity(name)
        if g.kinds[:1] == (kind,) or (kind in g.kinds and g.unit in have):
            out.append((name, g.unit))
    for name in structured_granularities(per_layer=False):
        g = get_granularity(name)
        if g.unit in have:
            out.append((name, g.unit))
    return out


def _has_own_units(kind: str) -> bool:
    """Whether targets of `kind` have whole units of their own to remove (a per-layer structured granularity made
    for this kind is registered): filters, neurons, heads, LSTM units."""
    from .masks.granularity import get_granularity, structured_granularities

    return any(get_granularity(n).kinds[:1] == (kind,) for n in structured_granularities())


def _unreached(name: str, groups: GroupAnalysis, unit: str) -> str:
    parent = name.rsplit(".", 1)[0] if "." in name else ""
    if parent in groups.refused:
        return groups.refused[parent]
    if unit == "channel" and any(groups.groups[g].unit == "head" for g in groups.by_module.get(name, ())):
        return "its outputs are attention heads: prune them with granularity 'head'"
    if unit == "channel":
        return "its outputs were not reached when tracing the model"
    return f"it belongs to no {unit} group"


def _registered_patterns(kind: str) -> list[str]:
    """Registered unstructured granularities that select per tensor (`mask_fn`) and apply to `kind`."""
    from .masks.granularity import available_granularities, get_granularity

    out = []
    for name in available_granularities():
        g = get_granularity(name)
        if g.mask_fn is not None and not g.patterned and kind in g.kinds:
            out.append(name)
    return out


def find_targets(model: nn.Module, groups: GroupAnalysis | None = None) -> Targets:
    """All prunable targets of `model`, in `named_modules()` order.

    Shared (tied) parameters are pruned once: the first layer holding them is the target, later ones are
    listed with `tied_to` and no granularity, and a `WorkbenchWarning` says so.
    """
    owner: dict[int, str] = {}
    out: list[Target] = []
    for name, module in model.named_modules():
        found = _kind(module)
        if found is None:
            continue
        kind, local = found
        tensors = [getattr(module, p) for p in local]
        if not tensors or any(not isinstance(t, nn.Parameter) for t in tensors):
            continue
        tied = [owner[id(t)] for t in tensors if id(t) in owner]
        if tied:
            warnings.warn(
                f"{name!r} shares its weights with {tied[0]!r}; the workbench prunes them once, as {tied[0]!r}",
                WorkbenchWarning,
                stacklevel=3,
            )
        for t in tensors:
            owner.setdefault(id(t), name)
        granularities: list[str] = [] if tied else ["weight", *_registered_patterns(kind)]
        unsupported: dict[str, str] = {}
        gids: tuple[str, ...] = ()
        structured = _has_own_units(kind) or (groups is not None and name in groups.by_module)
        if structured and not tied:
            gids = tuple(groups.by_module.get(name, ())) if groups is not None else ()
            for gran, unit in _units(kind, gids, groups):
                mine = [g for g in gids if groups.groups[g].unit == unit]  # type: ignore[union-attr]
                bad = [groups.groups[g].reason for g in mine if not groups.groups[g].supported]  # type: ignore[union-attr]
                if groups is None:
                    unsupported[gran] = "no example input was given to trace coupled channels"
                elif mine and not bad:
                    granularities.append(gran)
                elif bad:
                    unsupported[gran] = bad[0]
                elif groups.error and unit == "channel":
                    unsupported[gran] = groups.error
                else:
                    unsupported[gran] = _unreached(name, groups, unit)
        if groups is not None and groups.hidden_error and kind in ("linear", "embedding") and not tied:
            unsupported.setdefault("hidden", groups.hidden_error)
        bids: tuple[str, ...] = ()
        if not tied:
            if groups is None:
                unsupported["layer"] = "no example input was given to find residual branches"
            else:
                bids = tuple(groups.branches_of.get(name, ()))
                if bids:
                    granularities.append("layer")
                else:
                    unsupported["layer"] = groups.branch_error or (
                        "it is not inside a removable residual branch (a branch whose output is added to a skip "
                        "connection); removing it would disconnect the network"
                    )
        shape = tuple(tensors[0].shape)
        patterns = (
            () if tied else tuple(p for p in PATTERN_EXAMPLES if not pattern_fit(p, kind, type(module).__name__, shape))
        )
        out.append(
            Target(
                name=name,
                kind=kind,
                module_type=type(module).__name__,
                params=local,
                shape=tuple(tensors[0].shape),
                numel=sum(t.numel() for t in tensors),
                granularities=tuple(granularities),
                groups=gids,
                unsupported=unsupported,
                tied_to=tied[0] if tied else None,
                patterns=patterns,
                branches=bids,
            )
        )
    if not out:
        raise ModelError(
            f"{type(model).__name__} has no prunable layers: the workbench prunes Linear, Conv, LSTM/GRU/RNN, "
            "MultiheadAttention, affine norm and Embedding layers. Wrap custom weights in one of these modules."
        )
    return Targets(out)
