"""The dashboard's built-in panels: header, actions + history, and export here; sensitivity, entropy,
connectivity and profile in `workbench.ui.analysis_panels` (importable from here too). Each composes
`workbench.viz` plots rendered to PNG image widgets, re-rendered in place."""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as W

from ._base import Panel
from .analysis_panels import ConnectivityPanel, EntropyPanel, ProfilePanel, SensitivityPanel

__all__ = [
    "ActionsPanel",
    "ConnectivityPanel",
    "EntropyPanel",
    "ExportPanel",
    "Header",
    "ProfilePanel",
    "SensitivityPanel",
]


class Header(Panel):
    title = "Header"

    def __init__(self, dashboard):
        super().__init__(dashboard)
        self.text = W.HTML()
        self.text.add_class("wb-header")
        self.metric = W.HTML()
        self.metric.add_class("wb-metric")
        self.bar = W.FloatProgress(value=0, min=0, max=1, description="sparsity", layout=W.Layout(width="360px"))
        self.refresh()

    def widget(self) -> W.Widget:
        return W.VBox([W.HBox([self.text, self.metric]), self.bar])

    def refresh(self) -> None:
        b = self.bench
        # now: the current entry's metrics, else evaluated; on the dense model once, kept as the history's entry 0
        # (its line then shows the metric too; evaluated again after weights were edited outside the workbench)
        rep = b.report()
        now, dense = rep.now, rep.dense
        name = b.metric if isinstance(b.metric, str) else getattr(b.metric, "__name__", "metric")
        if now is not None and dense is not None:
            self.metric.value = (
                f"&nbsp;&nbsp;<b>{name}</b> now <b class='wb-metric-now'>{now['metric']:.4f}</b> "
                f"vs dense {dense['metric']:.4f} ({now['metric'] - dense['metric']:+.4f})"
            )
        elif now is not None:
            self.metric.value = f"&nbsp;&nbsp;<b>{name}</b> now <b class='wb-metric-now'>{now['metric']:.4f}</b>"
        d = self.dashboard
        flops = d.flops_effective()
        self.text.value = (
            f"<b>{html.escape(b.name)}</b> — {rep.model_params:,} parameters, {rep.nonzeros:,} of {rep.params:,} "
            f"prunable weights non-zero, {flops / 1e6:.2f} of {d.flops_total / 1e6:.2f} MFLOPs effective, "
            f"{d.latency_ms:.2f} ms/batch of {d.batch_size} (measured)"
        )
        self.bar.value = rep.sparsity
        self.bar.description = f"sparsity {rep.sparsity:.0%}"


class ActionsPanel(Panel):
    title = "Actions"

    def __init__(self, dashboard):
        super().__init__(dashboard)
        self.apply_button = W.Button(description="Apply", button_style="primary", icon="check")
        self.undo_button = W.Button(description="Undo", icon="undo")
        self.redo_button = W.Button(description="Redo", icon="repeat")
        self.reset_button = W.Button(description="Reset", icon="refresh")
        for b, fn in (
            (self.apply_button, self.apply),
            (self.undo_button, self.undo),
            (self.redo_button, self.redo),
            (self.reset_button, self.reset),
        ):
            b.on_click(lambda _, fn=fn: fn())
            b.add_class("wb-" + b.description.lower())
        self.busy.buttons += [self.apply_button, self.undo_button, self.redo_button, self.reset_button]
        self.history = W.Select(options=[], rows=6, layout=W.Layout(width="100%"))
        self.history.add_class("wb-history")
        self._updating = False
        self.history.observe(self._picked, names="value")
        self.busy.on_idle.append(self._buttons)
        self.refresh()

    def widget(self) -> W.Widget:
        buttons = W.HBox([self.apply_button, self.undo_button, self.redo_button, self.reset_button])
        return W.VBox([buttons, W.HTML("<b>history</b> (click an entry to go back or forward to it)"), self.history])

    def _done(self, _: Any = None) -> None:
        self.dashboard.refresh()

    def apply(self) -> None:
        plan = self.dashboard.editor.plan()
        if not plan.layers:
            self.log("the plan is empty: move a slider first", "warn")
            return
        n = len(plan.layers)
        label = f"{next(iter(plan.layers))} {next(iter(plan.layers.values())).ratio:.0%}" if n == 1 else f"{n} layers"
        self.busy.run("apply + evaluate", lambda: self.bench.apply(plan, label=label), self._done)

    def undo(self) -> None:
        self.busy.run("undo", self.bench.undo, self._done)

    def redo(self) -> None:
        self.busy.run("redo", self.bench.redo, self._done)

    def reset(self) -> None:
        self.busy.run("reset", self.bench.reset, self._done)

    def _picked(self, change) -> None:
        if self._updating or change["new"] is None or change["new"] == self.bench.store.position:
            return
        self.busy.run(f"go to step {change['new']}", lambda: self.bench.goto(change["new"]), self._done)

    def refresh(self) -> None:
        opts = []
        for e in self.bench.history:
            metric = "not evaluated" if e.metric is None else f"{e.metric:.4f}"
            mark = "▶ " if e.index == self.bench.store.position else ("  " if e.active else "↷ ")
            opts.append((f"{mark}{e.index}  {e.label[:48]:<48}  metric {metric}  sparsity {e.sparsity:.1%}", e.index))
        self._updating = True
        try:
            self.history.options = opts
            self.history.value = self.bench.store.position
        finally:
            self._updating = False
        self._buttons()

    def _buttons(self) -> None:
        self.undo_button.disabled = self.bench.store.position == 0
        self.redo_button.disabled = self.bench.store.position >= len(self.bench.store.steps)


class ExportPanel(Panel):
    title = "Export"

    def __init__(self, dashboard):
        super().__init__(dashboard)
        self.folder = W.Text(value="out", description="folder")
        self.button = W.Button(description="Compile + export", icon="download")
        self.button.on_click(lambda _: self.export())
        self.busy.buttons.append(self.button)
        self.report = W.HTML()

    def widget(self) -> W.Widget:
        return W.VBox([W.HBox([self.folder, self.button]), self.report])

    def export(self) -> None:
        try:
            from .. import sparse
        except ImportError:
            self.log("the sparse core (workbench.sparse: compile and export) is not available in this version", "warn")
            return
        folder = self.folder.value

        def work():
            compiled = sparse.compile(self.bench, backend="auto")
            files = sparse.export(compiled.module, folder, example_inputs=self.bench.example_inputs)
            return compiled.report, files

        def done(result) -> None:
            rep, files = result
            self.report.value = f"<pre>{html.escape(str(rep))}\n\n{html.escape(str(files))}</pre>"

        self.busy.run("compile + export", work, done)
