"""Plans are plain data: which targets to prune, by how much, at which granularity, by which criterion.

A plan does not know the model. It is resolved against a model's targets when applied
(`workbench.masks.select.resolve`), and every mistake is reported then, before anything changes.

>>> p = Plan.uniform(0.5, granularity="filter", criterion="l1")
>>> p.with_ratio("features.0", 0.2).layers["features.0"].ratio
0.2
>>> Plan.from_json(p.to_json()) == p
True
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ._deprecate import keyword_only_after
from .errors import PlanError

__all__ = ["LayerPlan", "Plan", "as_plan"]

_SCOPES = ("layer", "global")


def check_ratio(ratio: Any, where: str) -> float:
    """Return `ratio` as a float in [0, 1), or raise a PlanError that names `where`."""
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)):
        raise PlanError(f"ratio for {where} must be a number in [0, 1), got {ratio!r}")
    r = float(ratio)
    if math.isnan(r) or not 0.0 <= r < 1.0:
        raise PlanError(
            f"ratio for {where} must be in [0, 1) (the share of weights to remove), got {ratio!r}; "
            "use 0 to leave a layer dense and at most 0.99... to prune nearly all of it"
        )
    return r


@dataclass(frozen=True)
class LayerPlan:
    """How to prune one target: the share to remove, the unit (granularity) and the score (criterion).

    `ratio` is the layer's sparsity after the step, counting what earlier steps already removed;
    an earlier step is never undone by a later, lower ratio (use `Workbench.undo` for that).
    """

    ratio: float
    granularity: str = "weight"
    criterion: str = "magnitude"

    def __post_init__(self) -> None:
        object.__setattr__(self, "ratio", check_ratio(self.ratio, "this layer"))
        for attr in ("granularity", "criterion"):
            value = getattr(self, attr)
            if not isinstance(value, str) or not value:
                raise PlanError(f"LayerPlan.{attr} must be a non-empty string, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"ratio": self.ratio, "granularity": self.granularity, "criterion": self.criterion}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "a layer") -> LayerPlan:
        if not isinstance(d, Mapping) or "ratio" not in d:
            raise PlanError(f"plan entry for {where} must be an object with a 'ratio', got {d!r}")
        unknown = set(d) - {"ratio", "granularity", "criterion"}
        if unknown:
            raise PlanError(f"plan entry for {where} has unknown keys {sorted(unknown)}")
        try:
            return cls(**dict(d))
        except PlanError as e:
            raise PlanError(str(e).replace("this layer", repr(where))) from None


@dataclass(frozen=True)
class Plan:
    """Per-target pruning instructions.

    - `layers`: explicit entries, target name -> LayerPlan (always win);
    - `default`: a LayerPlan for every other target that `include`/`exclude` select and that supports
      its granularity (``Plan.uniform``), or, with ``scope="global"``, one ratio over the pooled
      weights of all those targets (``Plan.global_``);
    - `include`/`exclude`: glob patterns on target names (`fnmatch`), e.g. ``"features.*"``.
      With `include=None` the default covers linear, conv, lstm and attention targets; norm and
      embedding targets are pruned only when named or included explicitly.
    """

    layers: Mapping[str, LayerPlan] = field(default_factory=dict)
    default: LayerPlan | None = None
    scope: str = "layer"
    include: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.layers, Mapping):
            raise PlanError(f"Plan layers must map target names to LayerPlan, got {type(self.layers).__name__}")
        layers = {}
        for name, lp in self.layers.items():
            if not isinstance(name, str):
                raise PlanError(f"plan target names must be strings, got {name!r}")
            if isinstance(lp, (int, float)) and not isinstance(lp, bool):
                lp = LayerPlan(check_ratio(lp, repr(name)))
            elif isinstance(lp, Mapping):
                lp = LayerPlan.from_dict(lp, name)
            elif not isinstance(lp, LayerPlan):
                raise PlanError(f"plan entry for {name!r} must be a LayerPlan, got {lp!r}")
            layers[name] = lp
        object.__setattr__(self, "layers", MappingProxyType(layers))
        if self.scope not in _SCOPES:
            raise PlanError(f"plan scope must be one of {_SCOPES}, got {self.scope!r}")
        if self.scope == "global" and self.default is None:
            raise PlanError("a global plan needs a default LayerPlan (use Plan.global_)")
        if self.default is not None and not isinstance(self.default, LayerPlan):
            raise PlanError(f"Plan.default must be a LayerPlan or None, got {self.default!r}")
        object.__setattr__(self, "include", _patterns(self.include, "include"))
        object.__setattr__(self, "exclude", _patterns(self.exclude, "exclude") or ())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Plan) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(self.to_json())

    # constructors ------------------------------------------------------------------------------
    @classmethod
    @keyword_only_after(2, old_order=("granularity", "criterion", "include", "exclude"))
    def uniform(
        cls,
        ratio: float,
        *,
        granularity: str = "weight",
        criterion: str = "magnitude",
        include: Iterable[str] | str | None = None,
        exclude: Iterable[str] | str = (),
    ) -> Plan:
        """The same ratio, granularity and criterion on every selected target (everything after `ratio` by keyword:
        ``Plan.uniform(0.5, granularity="filter", criterion="l1")``)."""
        return cls(
            default=LayerPlan(check_ratio(ratio, "Plan.uniform"), granularity, criterion),
            include=include,
            exclude=exclude,
        )  # type: ignore[arg-type]

    @classmethod
    @keyword_only_after(2, old_order=("criterion", "granularity", "include", "exclude"))
    def global_(
        cls,
        ratio: float,
        *,
        criterion: str = "magnitude",
        granularity: str = "weight",
        include: Iterable[str] | str | None = None,
        exclude: Iterable[str] | str = (),
    ) -> Plan:
        """One ratio over the pooled weights of every selected target: layers lose different shares (everything after
        `ratio` by keyword, as in `uniform`: ``Plan.global_(0.5, criterion="l1")``)."""
        return cls(
            default=LayerPlan(check_ratio(ratio, "Plan.global_"), granularity, criterion),
            scope="global",
            include=include,
            exclude=exclude,
        )  # type: ignore[arg-type]

    # edits -------------------------------------------------------------------------------------
    def with_ratio(self, name: str, ratio: float) -> Plan:
        """A new plan in which target `name` has its own entry with `ratio` (other fields kept)."""
        base = self.layers.get(name) or self.default or LayerPlan(0.0)
        return self.with_layer(name, LayerPlan(check_ratio(ratio, repr(name)), base.granularity, base.criterion))

    def with_layer(self, name: str, layer_plan: LayerPlan) -> Plan:
        """A new plan with `name` set to `layer_plan`."""
        return Plan({**self.layers, name: layer_plan}, self.default, self.scope, self.include, self.exclude)

    def without(self, name: str) -> Plan:
        """A new plan without the explicit entry for `name`."""
        layers = {k: v for k, v in self.layers.items() if k != name}
        return Plan(layers, self.default, self.scope, self.include, self.exclude)

    # serialisation -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            "layers": {k: v.to_dict() for k, v in self.layers.items()},
            "default": None if self.default is None else self.default.to_dict(),
            "scope": self.scope,
            "include": None if self.include is None else list(self.include),
            "exclude": list(self.exclude),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Plan:
        if not isinstance(d, Mapping):
            raise PlanError(f"a plan must be a JSON object, got {type(d).__name__}")
        unknown = set(d) - {"version", "layers", "default", "scope", "include", "exclude"}
        if unknown:
            raise PlanError(f"plan has unknown keys {sorted(unknown)}; expected layers/default/scope/include/exclude")
        if d.get("version", 1) != 1:
            raise PlanError(f"plan version {d.get('version')!r} is not supported by this workbench (expects 1)")
        layers = d.get("layers", {})
        if not isinstance(layers, Mapping):
            raise PlanError(f"plan 'layers' must be an object of name -> entry, got {type(layers).__name__}")
        default = d.get("default")
        return cls(
            layers={k: LayerPlan.from_dict(v, k) for k, v in layers.items()},
            default=None if default is None else LayerPlan.from_dict(default, "the default"),
            scope=d.get("scope", "layer"),
            include=d.get("include"),
            exclude=d.get("exclude", ()),
        )

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_json(cls, text: str) -> Plan:
        try:
            data = json.loads(text)
        except (TypeError, json.JSONDecodeError) as e:
            raise PlanError(f"plan JSON does not parse: {e}") from None
        return cls.from_dict(data)

    def __repr__(self) -> str:
        parts = []
        if self.default is not None:
            d = self.default
            scope = "uniform" if self.scope == "layer" else self.scope  # "layer" is also a granularity's name
            parts.append(f"{scope} {d.ratio:g} {d.granularity}/{d.criterion}")
        if self.include is not None:
            parts.append(f"include={list(self.include)}")
        if self.exclude:
            parts.append(f"exclude={list(self.exclude)}")
        for k, v in self.layers.items():
            parts.append(f"{k}: {v.ratio:g} {v.granularity}/{v.criterion}")
        return "Plan(" + ", ".join(parts) + ")"


def _patterns(value: Any, what: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    try:
        items = tuple(value)
    except TypeError:
        raise PlanError(f"plan {what} must be a glob pattern or a list of them, got {value!r}") from None
    if not all(isinstance(v, str) for v in items):
        raise PlanError(f"plan {what} patterns must be strings, got {items!r}")
    return items


def as_plan(plan: Any) -> Plan:
    """`plan` itself, or the plan of a result that carries one (`bench.allocate`'s `Allocation`)."""
    if isinstance(plan, Plan):
        return plan
    inner = getattr(plan, "plan", None)
    if isinstance(inner, Plan):
        return inner
    raise PlanError(
        f"expected a workbench Plan, got {type(plan).__name__}; build one with Plan.uniform/global_ "
        "(or pass the result of bench.allocate)"
    )
