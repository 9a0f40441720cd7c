"""The dashboard: `bench.show()`. Composes the panels; other features add tabs with `register_panel`."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

import ipywidgets as W

from ._base import Busy, Debouncer, Log, Panel
from .panels import ActionsPanel, ConnectivityPanel, EntropyPanel, ExportPanel, Header, ProfilePanel, SensitivityPanel
from .plan_editor import PlanEditor
from .preview import PreviewModel

__all__ = ["Dashboard", "panels", "register_panel"]

_PANELS: dict[str, Callable[[Any], Panel]] = {}


def register_panel(name: str, factory: Callable[[Any], Panel], *, overwrite: bool = False) -> None:
    """Add a tab to every dashboard built afterwards: `factory(dashboard) -> Panel`.

    >>> from workbench.ui import register_panel, Panel
    >>> class Hello(Panel):
    ...     title = "Hello"
    ...     def widget(self):
    ...         import ipywidgets as W
    ...         return W.Label("hello " + self.bench.name)
    >>> register_panel("hello", Hello, overwrite=True)
    """
    if name in _PANELS and not overwrite:
        raise ValueError(f"a dashboard panel {name!r} is already registered; pass overwrite=True to replace it")
    _PANELS[name] = factory


def panels() -> list[str]:
    return list(_PANELS)


for _name, _cls in (
    ("sensitivity", SensitivityPanel),
    ("entropy", EntropyPanel),
    ("connectivity", ConnectivityPanel),
    ("profile", ProfilePanel),
    ("export", ExportPanel),
):
    register_panel(_name, _cls)


class Dashboard:
    """Widgets attached to one live Workbench. `threaded=False` and `scheduler=lambda d, f: f()` make every
    event synchronous (tests); `executor` is passed to sensitivity scans."""

    def __init__(
        self, bench, *, threaded: bool = True, scheduler=None, executor: Executor | None = None, batch_size: int = 64
    ):
        self.bench = bench
        self.executor = executor
        self.batch_size = batch_size
        self.log = Log()
        self.busy = Busy(self.log, threaded=threaded)
        self.debounce = Debouncer(0.05, scheduler)
        self.last_profile = None
        self._measure()
        self.preview_model = PreviewModel(bench, self.flops_per_weight, self.flops_total)
        self.header = Header(self)
        self.editor = PlanEditor(self)
        self.actions = ActionsPanel(self)
        self.tabs: dict[str, Panel] = {}
        for name, factory in _PANELS.items():
            try:
                self.tabs[name] = factory(self)
            except Exception as e:  # a broken extension panel must not take the dashboard down
                self.log(f"panel {name!r} failed to build: {type(e).__name__}: {e}", "error")
        self._widget: W.Widget | None = None
        self._tab: W.Tab | None = None
        self._stale: set[str] = set()

    # the header's measurement runs while the dashboard opens: on a large model (BERT-base at sequence 128, an LLM)
    # a forward pass of `batch_size` rows takes seconds, so the rows are cut to what fits in about this long
    MEASURE_SECONDS = 0.25

    def _rows_to_measure(self) -> int:
        """`batch_size`, or fewer rows where one forward pass of them would take longer than `MEASURE_SECONDS`
        (FLOP shares do not depend on the rows; the header says which batch its latency is for)."""
        import time

        import torch

        from ..adapter import size
        from ..evaluate import call, eval_mode, model_device, to_device

        ex = self.bench.example_inputs
        if ex is None:
            return self.batch_size
        x = to_device(ex, model_device(self.bench.model))
        with eval_mode(self.bench.model), torch.inference_mode():
            call(self.bench.model, x)  # warm-up: the first call pays for allocations
            t0 = time.perf_counter()
            call(self.bench.model, x)
            per_row = (time.perf_counter() - t0) / max(1, size(x))
        return max(1, min(self.batch_size, int(self.MEASURE_SECONDS / max(per_row, 1e-9))))

    def _measure(self) -> None:
        self.batch_size = self._rows_to_measure()
        prof = self.bench.profile(batch_size=self.batch_size, repeats=5, per_layer=False)
        self.last_profile = prof
        self.flops_total = float(prof.total_flops_dense)
        self.latency_ms = prof.total_latency_ms
        self.flops_per_weight = {}
        for i, name in enumerate(prof.layers):
            for p in self.bench.targets[name].param_names():
                self.flops_per_weight[p] = prof.flops_dense[i] / max(1, prof.params[i])

    def _latency(self, repeats: int = 5) -> float:
        """End-to-end median latency (ms) of one batch, as the header shows it."""
        import torch

        from ..analysis.profile import _batch, _median_ms
        from ..evaluate import call, eval_mode, model_device, to_device

        x = to_device(_batch(self.bench.example_inputs, self.batch_size), model_device(self.bench.model))
        with eval_mode(self.bench.model), torch.inference_mode():
            return _median_ms(lambda: call(self.bench.model, x), repeats)

    def flops_effective(self) -> float:
        masks = self.bench.store.masks()
        return self.flops_total - sum(float(m.sum()) * self.flops_per_weight.get(n, 0.0) for n, m in masks.items())

    def widget(self) -> W.Widget:
        if self._widget is None:
            tab = W.Tab(children=[p.widget() for p in self.tabs.values()])
            for i, p in enumerate(self.tabs.values()):
                tab.set_title(i, p.title)
            tab.selected_index = 0
            tab.observe(lambda _: self._refresh_selected(), names="selected_index")
            self._tab = tab
            main = W.VBox(
                [
                    self.header.widget(),
                    W.HTML("<h4 style='margin:4px 0'>Plan</h4>"),
                    self.editor.widget(),
                    self.actions.widget(),
                    self.busy.widget,
                    tab,
                    W.HTML("<b>log</b>"),
                    self.log.widget,
                ]
            )
            main.add_class("wb-dashboard")
            self._widget = main
        return self._widget

    @property
    def selected(self) -> str | None:
        """The tab on screen (the first one until the widget is built)."""
        names = list(self.tabs)
        index = self._tab.selected_index if self._tab is not None else 0
        return names[index] if names and index is not None else None

    def select(self, name: str) -> None:
        """Show tab `name` (it redraws first if the model changed while it was hidden)."""
        self.widget()
        self._tab.selected_index = list(self.tabs).index(name)
        self._refresh_selected()

    def _refresh_selected(self) -> None:
        name = self.selected
        if name in self._stale:
            self._stale.discard(name)
            self._safe(self.tabs[name])

    def _safe(self, panel: Panel) -> None:
        try:
            panel.refresh()
        except Exception as e:
            self.log(f"{panel.title}: {type(e).__name__}: {e}", "error")

    def refresh(self) -> None:
        """After the model changed: re-measure latency and FLOPs, redraw the header, plan, history and the tab
        on screen; hidden tabs redraw when shown (no wasted renders)."""
        try:
            self.latency_ms = self._latency()
        except Exception as e:
            self.log.error(e)
        for p in (self.header, self.editor, self.actions):
            self._safe(p)
        self._stale = set(self.tabs)
        self._refresh_selected()

    def refresh_analyses(self) -> None:
        for p in self.tabs.values():
            if isinstance(p, SensitivityPanel):
                p.refresh()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget())
