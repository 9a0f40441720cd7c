"""The selection guide: "which pruning should I use?" as a widget over `workbench.recommend`.

The user states constraints (goal, budget, device, one-shot or with fine-tuning); the guide measures the candidate
strategies on the live model (`wb.recommend`, in the busy runner: progress bar, Stop) and shows the ranked table
with one reason per strategy. "Apply best" applies the first row (`workbench.recommend.apply_row`: the plan, then
fine-tuning if the row was measured with it) as one history step. A change of a constraint re-runs the
recommendation (debounced; after the running one if busy). It is a dashboard tab ("Guide") and stands alone as
``wb.ui.guide(bench)``.
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as W

from ..recommend import GOALS, Recommendation, apply_row, recommend
from ._base import Busy, Debouncer, Log, Panel
from .dashboard import register_panel

__all__ = ["GuidePanel", "guide"]

_GOAL_LABELS = {
    "latency": "faster inference",
    "size": "smaller model",
    "accuracy": "most accuracy at a size",
    "robustness": "most robust at a size",
}


class GuidePanel(Panel):
    """Constraints in, ranked strategies out, and an "Apply best" button. Widgets: `goal`, `budget`, `device`,
    `timing`, `run_button`, `apply_button`; the last result is `result` (a `Recommendation`). `options`: more
    keyword arguments for `recommend` (e.g. ``{"strategies": [...], "repeats": 3}``)."""

    title = "Guide"
    task = "recommend"

    def __init__(self, dashboard):
        super().__init__(dashboard)
        self.debounce = getattr(dashboard, "debounce", None) or Debouncer(0.3)
        self.goal = W.Dropdown(options=[(_GOAL_LABELS[g], g) for g in GOALS], value="latency", description="goal")
        self.budget = W.FloatSlider(
            value=1.0,
            min=0.0,
            max=10.0,
            step=0.5,
            continuous_update=False,
            readout_format=".1f",
            style={"description_width": "initial"},
        )
        self.device = W.ToggleButtons(options=[("CPU", "cpu"), ("CUDA", "cuda")], value="cpu", description="device")
        self.timing = W.Dropdown(
            options=[("one-shot", 0), ("+ 1 epoch fine-tuning", 1), ("+ 2 epochs", 2)], value=0, description="timing"
        )
        self.run_button = W.Button(description="Recommend", icon="compass", button_style="info")
        self.apply_button = W.Button(description="Apply best", icon="check", button_style="primary", disabled=True)
        self.run_button.on_click(lambda _: self.run())
        self.apply_button.on_click(lambda _: self.apply())
        self.run_button.add_class("wb-guide-run")
        self.apply_button.add_class("wb-guide-apply")
        self.busy.buttons.append(self.run_button)
        self.summary = W.HTML(
            "<i>State your constraints and press Recommend: every strategy is measured on this model.</i>"
        )
        self.summary.add_class("wb-guide-summary")
        self.table = W.HTML()
        self.table.add_class("wb-guide-table")
        self.result: Recommendation | None = None
        self.options: dict[str, Any] = {}
        self._position: int | None = None  # the history position the result was measured at
        self._updating = False
        self._configure_budget()
        for w in (self.goal, self.budget, self.device, self.timing):
            w.observe(self._changed, names="value")

    # constraints -----------------------------------------------------------------------------------------------
    def _accuracy_metric(self) -> bool:
        return self.bench.metric == "accuracy"

    def _configure_budget(self) -> None:
        """The slider's meaning follows the goal: a metric drop for latency/size, a size ratio for the others."""
        self._updating = True
        try:
            with self.budget.hold_sync():
                if self.goal.value in ("latency", "size"):
                    acc = self._accuracy_metric()
                    self.budget.min, self.budget.max = 0.0, 10.0 if acc else 1.0
                    self.budget.step = 0.5 if acc else 0.01
                    self.budget.value = 1.0 if acc else 0.01
                    self.budget.description = "max accuracy drop (points)" if acc else "max metric drop"
                else:
                    self.budget.max, self.budget.min, self.budget.step = 10.0, 1.0, 0.25
                    self.budget.value = 2.0
                    self.budget.description = "min size ratio (x fewer params)"
        finally:
            self._updating = False

    def budget_value(self) -> float:
        """The slider as `recommend`'s budget (points of accuracy become a share)."""
        if self.goal.value in ("latency", "size") and self._accuracy_metric():
            return self.budget.value / 100.0
        return float(self.budget.value)

    def _changed(self, change) -> None:
        if self._updating:
            return
        if change["owner"] is self.goal:
            self._configure_budget()
        if self.result is not None or self.busy.running:  # once shown, the table follows the constraints
            self.debounce(self.run)

    # work ----------------------------------------------------------------------------------------------------
    def run(self) -> None:  # while another task runs: re-run with the new constraints once it ends
        self.run_or_defer(lambda: self.busy.run("recommend", self._work, self._show))

    def _work(self) -> Recommendation:
        return recommend(
            self.bench,
            self.goal.value,
            self.budget_value(),
            self.device.value,
            finetune=self.timing.value,
            progress=self.busy.tick,
            **self.options,
        )

    def rerun(self) -> str:
        self._show(self._work())
        return "recommend: re-run with the new constraints"

    def apply(self) -> None:
        if self.result is None or not self.result.rows or self.apply_button.disabled:
            self.log("guide: nothing to apply; press Recommend first", "warn")
            return
        if self.busy.running:
            self.log("guide: busy with another task; apply again when it ends", "warn")
            return
        if self.bench.store.position != self._position:
            self.apply_button.disabled = True
            self.log("guide: the model changed since this table was measured; press Recommend first", "warn")
            return
        row = self.result.best
        self.apply_button.disabled = True

        def done(entry) -> None:
            self.summary.value += (
                f"<br><b>Applied</b> #{row.rank} {html.escape(row.strategy)} as history step {entry.index}; the "
                "table was measured on the model before it: press Recommend to rank from here."
            )
            refresh = getattr(self.dashboard, "refresh", None)
            if refresh is not None:
                refresh()

        self.busy.run(f"apply {row.strategy}", lambda: apply_row(self.bench, row), done)

    def refresh(self) -> None:
        """After the model changed: a table measured on another state can no longer be applied."""
        if self.result is not None and self.bench.store.position != self._position:
            self.apply_button.disabled = True

    # display -------------------------------------------------------------------------------------------------
    def _show(self, rec: Recommendation) -> None:
        self.result = rec
        self._position = self.bench.store.position
        best = rec.rows[0] if rec.rows else None
        self.apply_button.disabled = best is None
        self.apply_button.description = "Apply best" if rec.met else "Apply closest (over budget)"
        self.apply_button.button_style = "primary" if rec.met else "warning"
        head = (
            f"<b>{html.escape(rec.model)}</b>: {html.escape(rec.metric_name)} now {rec.metric_now:.4g}; "
            f"budget {html.escape(rec.budget_text)}; "
            + (f"speed measured on {rec.measured_on}" if rec.measured_on else "<b>speed not measured</b>")
            + f" ({rec.seconds:.1f} s)"
        )
        if best is not None:
            head += f"<br><b>Best:</b> {html.escape(best.reason)}"
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in rec.notes)
        self.summary.value = head + (f"<ul>{notes}</ul>" if notes else "")
        self.table.value = _html_table(rec)

    def widget(self) -> W.Widget:
        controls = W.HBox([self.goal, self.budget, self.device], layout=W.Layout(flex_flow="row wrap"))
        actions = W.HBox([self.timing, self.run_button, self.apply_button])
        parts = [controls, actions, self.summary, self.table]
        extra = getattr(self.dashboard, "extra_widgets", ())
        return W.VBox(parts + list(extra))


def _html_table(rec: Recommendation) -> str:
    acc = "accuracy" in rec.metric_name
    head = [
        "#",
        "strategy",
        "timing",
        "ratio",
        "backend",
        rec.metric_name,
        "change",
        "speed-up",
        "size",
        "params",
        "budget",
        "why",
    ]
    rows = []
    for r in rec.rows:
        cells = [
            str(r.rank),
            r.strategy,
            r.timing,
            f"{r.ratio:.0%}",
            r.backend,
            f"{r.metric:.1%}" if acc else f"{r.metric:.4f}",
            f"{-100 * r.drop:+.1f} pt" if acc else f"{-r.drop:+.4f}",
            "n/a" if r.speedup is None else f"{r.speedup:.2f}x",
            "-" if r.size is None else f"{r.size:.0%}",
            f"{1 / r.size_ratio:.0%}",
            "ok" if r.meets_budget else "over",
            r.reason,
        ]
        style = "" if r.meets_budget else " style='color: var(--jp-ui-font-color2, #777)'"
        rows.append(f"<tr{style}>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    th = "".join(f"<th style='text-align:left'>{html.escape(h)}</th>" for h in head)
    return f"<table class='wb-guide-rows'><thead><tr>{th}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


class _Host:
    """What a panel needs from a dashboard, for the guide on its own: the bench, a log and a busy runner."""

    def __init__(self, bench, threaded: bool, scheduler):
        self.bench = bench
        self.log = Log()
        self.busy = Busy(self.log, threaded=threaded)
        self.debounce = Debouncer(0.3, scheduler)
        self.extra_widgets = (self.busy.widget, self.log.widget)


def guide(bench, *, threaded: bool = True, scheduler: Any = None) -> GuidePanel:
    """The selection guide on its own (it is also the dashboard's "Guide" tab). ``threaded=False`` and
    ``scheduler=lambda delay, fn: fn()`` make every event synchronous (tests)."""
    return GuidePanel(_Host(bench, threaded, scheduler))


register_panel("guide", GuidePanel, overwrite=True)
