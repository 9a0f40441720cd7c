"""The plan editor: one row per target with a ratio slider, granularity and criterion dropdowns, plan-wide
buttons (Uniform, Global, Allocate to budget, Save/Load JSON) and a live preview that never runs the model.

A model with many targets (a transformer: q/k/v/o and the MLP in every block) gets its rows in one collapsible
section per block, and a "by kind" tab with one slider per kind of layer (``attention.self.query``,
``mlp.down_proj``) that sets that layer in every block at once."""

from __future__ import annotations

import html

import ipywidgets as W
from ipywidgets.widgets.widget_description import DescriptionStyle  # (these two not exported by ipywidgets)
from ipywidgets.widgets.widget_string import HTMLStyle

from ..criteria import available as criteria_available
from ..errors import WorkbenchError
from ..masks.granularity import get_granularity
from ..plan import LayerPlan, Plan
from ._base import Panel
from .memory import ui_state

__all__ = ["PlanEditor"]

MAX_RATIO = 0.99
GROUP_ABOVE = 24  # more rows than this: grouped by block, with one slider per kind of layer


def block_of(name: str) -> str:
    """The repeated block a layer belongs to: its name up to the last numbered part (``encoder.layer.3``,
    ``model.layers.11``), or "" for layers outside any numbered block."""
    parts = name.split(".")
    last = max((i for i, p in enumerate(parts[:-1]) if p.isdigit()), default=-1)
    return ".".join(parts[: last + 1])


def kind_of(name: str) -> str:
    """A layer's name inside its block (``attention.self.query``, ``mlp.down_proj``): the same kind in every block."""
    block = block_of(name)
    return name[len(block) + 1 :] if block else name


class _Looks:
    """The layouts and styles every row shares: one widget model each instead of one per row (each row's own made
    it 12 models a row, 1450 opened at once for 121 layers: more than the kernel's message socket holds when the
    server falls behind, see `workbench.ui.cells`). Nothing changes a row's layout or style alone."""

    def __init__(self):
        self.label, self.slider = W.Layout(width="300px", overflow="hidden"), W.Layout(width="260px")
        self.granularity, self.criterion, self.box = W.Layout(width="110px"), W.Layout(width="120px"), W.Layout()
        self.label_style, self.slider_style, self.dropdown_style = HTMLStyle(), W.SliderStyle(), DescriptionStyle()


class _Row:
    def __init__(self, target, on_change, looks: _Looks):
        self.name = target.name
        self.target = target
        label = W.HTML(
            f"<code>{html.escape(target.name)}</code> <span style='opacity:.7'>{target.kind} "
            f"{'x'.join(map(str, target.shape))}</span>",
            layout=looks.label,
            style=looks.label_style,
        )
        label.tooltip = f"{target.module_type}, {target.numel:,} weights"
        self.slider = W.FloatSlider(
            value=0.0,
            min=0.0,
            max=MAX_RATIO,
            step=0.05,
            readout_format=".2f",
            continuous_update=True,
            layout=looks.slider,
            style=looks.slider_style,
        )
        self.slider.add_class("wb-ratio")
        self.granularity = W.Dropdown(
            options=list(target.granularities),
            value=target.granularities[0],
            layout=looks.granularity,
            style=looks.dropdown_style,
        )
        self.criterion = W.Dropdown(
            options=criteria_available(), value="magnitude", layout=looks.criterion, style=looks.dropdown_style
        )
        for w in (self.slider, self.granularity, self.criterion):
            w.observe(lambda ch, _row=self: on_change(_row, ch), names="value")
        self.box = W.HBox([label, self.slider, self.granularity, self.criterion], layout=looks.box)

    def layer_plan(self) -> LayerPlan:
        return LayerPlan(float(self.slider.value), self.granularity.value, self.criterion.value)


class PlanEditor(Panel):
    title = "Plan"

    def __init__(self, dashboard):
        super().__init__(dashboard)
        self._syncing = False
        looks = _Looks()
        self.rows = {t.name: _Row(t, self._changed, looks) for t in self.bench.targets if t.granularities}
        self.kind_sliders: dict[str, W.FloatSlider] = {}  # with more than GROUP_ABOVE rows: one per kind of layer
        self.sections: W.Accordion | None = None
        self.preview_label = W.HTML()
        self.preview_label.add_class("wb-preview")
        self.last_preview = None
        # plan-wide controls
        self.uniform_ratio = W.FloatText(value=0.5, description="ratio", layout=W.Layout(width="150px"))
        self.uniform_button = W.Button(description="Uniform", tooltip="the same ratio on every linear/conv layer")
        self.global_button = W.Button(description="Global", tooltip="one magnitude threshold over all layers")
        self.budget = W.FloatSlider(
            value=0.5,
            min=0.05,
            max=0.95,
            step=0.05,
            description="budget",
            readout_format=".0%",
            layout=W.Layout(width="260px"),
        )
        self.budget_target = W.Dropdown(
            options=["flops", "params", "sparsity"], value="flops", layout=W.Layout(width="100px")
        )
        self.allocate_button = W.Button(description="Allocate", tooltip="least predicted loss for the budget")
        self.json = W.Textarea(placeholder="plan JSON", layout=W.Layout(width="100%", height="70px"))
        self.save_button = W.Button(description="Save JSON")
        self.load_button = W.Button(description="Load JSON")
        self.uniform_button.on_click(lambda _: self.uniform())
        self.global_button.on_click(lambda _: self.global_())
        self.allocate_button.on_click(lambda _: self.allocate())
        self.save_button.on_click(lambda _: self.save_json())
        self.load_button.on_click(lambda _: self.load_json())
        self.busy.buttons += [self.uniform_button, self.global_button, self.allocate_button, self.load_button]
        state = ui_state(self.bench).get("plan")
        if state:
            self.set_plan(Plan.from_dict(state), log=False)
        self.update_preview()

    # --------------------------------------------------------------------------------------------
    def _kind_slider(self, kind: str, names: list[str]) -> W.Widget:
        slider = W.FloatSlider(
            value=0.0, min=0.0, max=MAX_RATIO, step=0.05, readout_format=".2f", layout=W.Layout(width="260px")
        )
        slider.add_class("wb-kind-ratio")

        def moved(change) -> None:
            first = self.rows[names[0]]
            g, c = first.granularity.value, first.criterion.value
            self._set({n: LayerPlan(change["new"], g, c) for n in names})
            self._after_set(f"{kind}: ratio {change['new']:g} in {len(names)} blocks")

        slider.observe(moved, names="value")
        self.kind_sliders[kind] = slider
        label = W.HTML(
            f"all <code>{html.escape(kind)}</code> <span style='opacity:.7'>({len(names)} layers)</span>",
            layout=W.Layout(width="300px"),
        )
        return W.HBox([label, slider])

    def _grouped(self) -> W.Widget:
        """Rows in one collapsible section per block, and a slider per kind of layer repeated across blocks."""
        blocks: dict[str, list[_Row]] = {}
        kinds: dict[str, list[str]] = {}
        for name, row in self.rows.items():
            blocks.setdefault(block_of(name), []).append(row)
            kinds.setdefault(kind_of(name), []).append(name)
        repeated = {k: v for k, v in kinds.items() if len(v) > 1}
        by_kind = W.VBox([self._kind_slider(k, v) for k, v in repeated.items()])
        sections = W.Accordion(children=[W.VBox([r.box for r in rows]) for rows in blocks.values()])
        for i, (block, rows) in enumerate(blocks.items()):
            weights = sum(r.target.numel for r in rows)
            sections.set_title(i, f"{block or '(outside blocks)'} — {len(rows)} layers, {weights:,} weights")
        self.sections = sections
        tabs = W.Tab(children=[by_kind, sections])
        tabs.set_title(0, "by kind")
        tabs.set_title(1, "by block")
        return W.Box([tabs], layout=W.Layout(max_height="420px", overflow="auto"))

    def widget(self) -> W.Widget:
        if len(self.rows) > GROUP_ABOVE:
            rows = self._grouped()
        else:
            rows = W.VBox([r.box for r in self.rows.values()], layout=W.Layout(max_height="320px", overflow="auto"))
        tools = W.HBox(
            [
                self.uniform_ratio,
                self.uniform_button,
                self.global_button,
                self.budget,
                self.budget_target,
                self.allocate_button,
            ]
        )
        return W.VBox([tools, rows, self.preview_label, W.HBox([self.save_button, self.load_button]), self.json])

    def entries(self) -> dict[str, LayerPlan]:
        return {n: r.layer_plan() for n, r in self.rows.items() if r.slider.value > 0}

    def plan(self) -> Plan:
        return Plan(self.entries())

    def _changed(self, row: _Row, change) -> None:
        if self._syncing:
            return
        lp = row.layer_plan()
        if get_granularity(lp.granularity).structured and lp.ratio > 0:
            try:  # coupled layers move together: one slider for the whole group
                members = self.dashboard.preview_model.row_of(row.name, lp.granularity, lp.criterion).members
            except WorkbenchError as e:
                self.log.error(e)
                members = (row.name,)
            self._set({m: lp for m in members if m in self.rows and m != row.name})
        ui_state(self.bench)["plan"] = self.plan().to_dict()
        self.dashboard.debounce(self.update_preview)

    def _set(self, entries: dict[str, LayerPlan]) -> None:
        self._syncing = True
        try:
            for name, lp in entries.items():
                r = self.rows[name]
                if lp.granularity in r.granularity.options:
                    r.granularity.value = lp.granularity
                r.criterion.value = lp.criterion
                r.slider.value = min(lp.ratio, MAX_RATIO)
        finally:
            self._syncing = False

    def set_plan(self, plan: Plan, log: bool = True) -> None:
        """Show an explicit plan's entries on the sliders (others go to 0)."""
        entries = dict(plan.layers)
        missing = [n for n in entries if n not in self.rows]
        if missing:
            raise WorkbenchError(f"the plan names layers that are not targets here: {missing}")
        self._set(
            {n: entries.get(n, LayerPlan(0.0, r.granularity.value, r.criterion.value)) for n, r in self.rows.items()}
        )
        ui_state(self.bench)["plan"] = self.plan().to_dict()
        self.update_preview()
        if log:
            self.log(f"plan set: {len(entries)} layers")

    def set_ratio(self, name: str, ratio: float) -> None:
        """Set one layer's slider (coupled layers follow), e.g. from a click on a sensitivity cell."""
        self.rows[name].slider.value = min(max(ratio, 0.0), MAX_RATIO)

    def update_preview(self) -> None:
        try:
            p = self.dashboard.preview_model.preview(self.entries(), self.bench.last_sensitivity)
        except WorkbenchError as e:
            self.preview_label.value = (
                f"<span style='color:var(--jp-error-color1,#c62828)'>{html.escape(str(e))}</span>"
            )
            return
        self.last_preview = p
        pred = (
            "run a sensitivity scan for a predicted change"
            if p.predicted is None
            else (f"predicted {p.predicted_units} <b>{p.predicted:+.4f}</b>")
        )
        self.preview_label.value = (
            f"<b>preview</b>: parameters kept <b>{p.params_kept:.1%}</b> "
            f"({p.params_total - p.params_removed:,} of {p.params_total:,}), FLOPs kept <b>{p.flops_kept:.1%}</b>, "
            f"{pred} <span style='opacity:.6'>({1000 * p.seconds:.1f} ms)</span>"
        )

    # plan-wide buttons --------------------------------------------------------------------------
    def _ratio(self) -> float:
        r = float(self.uniform_ratio.value)
        if not 0 <= r <= MAX_RATIO:
            clamped = min(max(r, 0.0), MAX_RATIO)
            self.log(f"ratio {r:g} is outside [0, {MAX_RATIO}]: clamped to {clamped:g}", "warn")
            self.uniform_ratio.value = r = clamped
        return r

    def uniform(self) -> None:
        from ..masks.select import DEFAULT_KINDS

        r = self._ratio()
        self._set(
            {
                n: LayerPlan(r if row.target.kind in DEFAULT_KINDS else 0.0, row.granularity.value, row.criterion.value)
                for n, row in self.rows.items()
            }
        )
        self._after_set(f"uniform {r:g}")

    def global_(self) -> None:
        """Sliders take the per-layer sparsities one global magnitude threshold gives."""
        r = self._ratio()
        try:
            sel = self.bench.preview(Plan.global_(r))
        except WorkbenchError as e:
            self.log.error(e)
            return
        entries = {}
        for name in sel.layers:
            t = self.bench.targets[name]
            masks = [sel.masks[p] for p in t.param_names() if p in sel.masks]
            share = sum(int(m.sum()) for m in masks) / t.numel
            entries[name] = LayerPlan(share, "weight", "magnitude")
        self._set({n: entries.get(n, LayerPlan(0.0, "weight", "magnitude")) for n in self.rows})
        self._after_set(f"global {r:g} (per-layer shares of one threshold)")

    def allocate(self) -> None:
        budget, target = float(self.budget.value), self.budget_target.value
        rows = [r for r in self.rows.values() if r.slider.value > 0] or list(self.rows.values())
        g, c = rows[0].granularity.value, rows[0].criterion.value

        def work():
            return self.bench.allocate(budget, target=target, granularity=g, criterion=c)

        def done(a) -> None:
            self.set_plan(a.plan, log=False)
            self.log(f"allocated {budget:.0%} of {target} ({g}/{c}): achieves {a.achieved:.1%}")
            self.dashboard.refresh_analyses()

        self.busy.run("allocating", work, done)

    def _after_set(self, what: str) -> None:
        ui_state(self.bench)["plan"] = self.plan().to_dict()
        self.update_preview()
        self.log(f"plan: {what}")

    def save_json(self) -> None:
        self.json.value = self.plan().to_json(indent=1)
        self.log("plan written to the JSON box")

    def load_json(self) -> None:
        try:
            self.set_plan(Plan.from_json(self.json.value))
        except WorkbenchError as e:
            self.log.error(e)

    def refresh(self) -> None:
        self.update_preview()
