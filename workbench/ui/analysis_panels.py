"""The dashboard's analysis panels: sensitivity (heatmap with per-cell buttons), entropy, connectivity and
profile. Each composes `workbench.viz` plots rendered to PNG image widgets, re-rendered in place."""

from __future__ import annotations

import time

import ipywidgets as W
import numpy as np

from ..criteria import available as criteria_available
from ..masks.granularity import available_granularities
from ._base import Panel, image_widget, render_png

UPDATE_CHUNK, UPDATE_PAUSE = 200, 0.5  # table cells updated at once (two messages each), seconds between chunks
CLICK_NOTE = "click a cell to set that layer's slider to the cell's ratio"
FILL_WORDS = {"log-linear": "interpolated log-linearly", "corrected": "the estimate corrected by them"}

__all__ = ["ConnectivityPanel", "EntropyPanel", "ProfilePanel", "SensitivityPanel"]


class SensitivityPanel(Panel):
    title = "Sensitivity"

    def __init__(self, dashboard):
        super().__init__(dashboard)
        grans = [g for g in available_granularities() if any(g in t.granularities for t in self.bench.targets)]
        self.granularity = W.Dropdown(options=grans, value="weight", description="granularity")
        self.criterion = W.Dropdown(options=criteria_available(), value="magnitude", description="criterion")
        self.mode = W.ToggleButtons(options=["estimate", "refine", "exact"], value="estimate")
        self.mode.tooltips = [
            "predicted from one gradient pass, with a trust figure",
            "the estimate first, then exact cells as they land (near the plan's ratios first); Stop keeps them",
            "every cell measured",
        ]
        self.live = None  # the refine map while it fills in
        self.redraw_every = 0.5  # seconds between heatmap redraws while a refine scan runs, at least
        self._drawn = 0.0
        self._draw_cost = 0.0  # seconds the last redraw took: redraws take at most a fifth of a scan's time
        self._cells_key: tuple | None = None  # (layers, ratios) of the cell buttons now shown
        self._buttons: list[list[W.Button]] = []
        self.scan_button = W.Button(description="Scan", icon="play")
        self.scan_button.on_click(lambda _: self.scan())
        self.busy.buttons.append(self.scan_button)
        self.image = image_widget()
        self.source = W.HTML()  # what the heatmap shows: which scan, by which engine, how long it took
        self.source.add_class("wb-sensitivity-source")
        self.grid = W.VBox()
        self.note = W.HTML(CLICK_NOTE)
        self.busy.on_idle.append(lambda: self._table_shown(True))
        self.refresh()

    def widget(self) -> W.Widget:
        return W.VBox(
            [
                W.HBox([self.granularity, self.criterion, self.mode, self.scan_button]),
                self.source,
                self.image,
                self.note,
                self.grid,
            ]
        )

    def _table_shown(self, shown: bool) -> None:
        """A refine scan hides the table of the previous map while the heatmap fills in (the table follows when
        the scan ends, stopped or not: see `refresh`); shown again once it ends, also on an error."""
        self.grid.layout.display = "" if shown else "none"
        self.note.value = CLICK_NOTE if shown else "the table of values follows when the scan ends (or is stopped)"

    def scan(self) -> None:
        g, c, mode = self.granularity.value, self.criterion.value, self.mode.value
        ratios = np.round(np.linspace(0.1, 0.9, 9), 2)

        def work():  # estimates with the Fisher term: first order alone shows whole layers "improving" when pruned
            extra = {"second_order": True} if mode != "exact" else {"executor": self.dashboard.executor}
            if mode == "refine":  # cells near the sliders' ratios first; the heatmap fills in as they land
                self._drawn = 0.0
                self._table_shown(False)
                extra.update(around=self.dashboard.editor.plan(), on_update=self._landed)
            return self.bench.sensitivity(ratios, g, c, mode=mode, progress=self.busy.tick, **extra)

        def done(sens) -> None:
            self.live = None
            self.refresh()
            self.dashboard.editor.update_preview()

        self.busy.run(f"{mode} sensitivity scan", work, done)

    def _landed(self, sens) -> None:
        """A refine scan's map after another exact cell: redrawn at most every `redraw_every` seconds."""
        self.live = sens
        now = time.perf_counter()
        wait = self.redraw_every and max(self.redraw_every, 4 * self._draw_cost)  # 0: after every cell
        if now - self._drawn >= wait:
            self.refresh(sens)
            self._drawn = time.perf_counter()
            self._draw_cost = self._drawn - now

    def refresh(self, sens=None) -> None:
        sens = sens if sens is not None else self.bench.last_sensitivity
        if sens is None:
            self.image.layout.display = "none"
            self.grid.children = ()
            self.source.value = ""
            return
        from ..viz import plot_sensitivity

        caption = (
            f"{sens.mode} scan, {sens.granularity}/{sens.criterion}: {sens.engine or 'measured'}, {sens.seconds:.1f} s"
        )
        if sens.mode in ("estimate", "refine") and getattr(sens, "trust", None) is not None:
            caption += f"; estimate trust {sens.trust:.2f} ({len(sens.checks)} cells checked exactly"
            if sens.scale is not None and np.isfinite(sens.scale):
                caption += f", predicted values {sens.scale:.2g}x the measured"
            caption += ")"
        if sens.mode == "refine" and sens.exact is not None:
            caption += f"; {int(sens.exact.sum())}/{sens.exact.size} cells exact (marked •)"
            if getattr(sens, "fill", None) and not sens.exact.all():
                caption += f", the others {FILL_WORDS.get(sens.fill, sens.fill)}"

        self.image.layout.display = ""
        self.image.value = render_png(
            lambda ax: plot_sensitivity(sens, ax=ax), size=(7.0, max(2.5, 0.22 * len(sens.layers) + 1.2))
        )
        if sens is not self.live:  # a scan filling in redraws the heatmap only: the table follows when it ends
            self.grid.children = self._cells(sens)
        self.source.value = caption  # once, last: the browser never shows a count the map does not show yet

    def _cells(self, sens):
        """A clickable table of the scan: layers x ratios, each cell coloured by its value. A map with the same
        layers and ratios as the one shown updates the existing buttons (only changed cells send anything to the
        browser: two messages, its text and its colour); a new table sends everything as its widgets open (Jupyter's
        server drops a kernel's updates beyond 1000 a second, not the openings: changed cells go out `UPDATE_CHUNK`
        at a time, `UPDATE_PAUSE` seconds apart). A refine scan does not update the table while it fills in (see
        `refresh`)."""
        import matplotlib as mpl

        vals = sens.values
        lim = float(np.nanmax(np.abs(vals))) if np.isfinite(vals).any() else 1.0
        norm = mpl.colors.TwoSlopeNorm(vcenter=0.0, vmin=-lim or -1, vmax=lim or 1)
        cmap = mpl.colormaps["RdBu" if sens.higher_is_better else "RdBu_r"]
        marked = sens.exact if sens.mode == "refine" and sens.exact is not None else None

        def cell(i: int, j: int) -> tuple[str, str]:  # the text and colour of a cell
            v = vals[i, j]
            dot = "•" if marked is not None and marked[i, j] else ""
            if np.isnan(v):
                return "—", "#cccccc"
            return f"{dot}{v:+.3f}", mpl.colors.to_hex(cmap(norm(v)))

        key = (tuple(sens.layers), tuple(float(r) for r in sens.ratios))
        if key != self._cells_key:
            self._buttons = []
            rows = []
            for i, layer in enumerate(sens.layers):
                buttons = []
                for j, r in enumerate(sens.ratios):
                    text, color = cell(i, j)
                    b = W.Button(
                        description=text,
                        style={"button_color": color, "font_size": "10px"},
                        layout=W.Layout(width="62px", padding="0"),  # room for "•+0.123" (a button pads 12px)
                        tooltip=f"{layer} at {r:.0%}",
                        _dom_classes=("wb-cell",),
                    )
                    b.on_click(lambda _, layer=layer, r=float(r): self.dashboard.editor.set_ratio(layer, r))
                    buttons.append(b)
                self._buttons.append(buttons)
                # flex "0 0 auto": rows keep their height and the box scrolls (flex boxes shrink them to fit)
                label = W.Label(layer, layout=W.Layout(width="180px"))
                rows.append(W.HBox([label, *buttons], layout=W.Layout(flex="0 0 auto")))
            header = W.HBox(
                [W.Label("", layout=W.Layout(width="180px"))]
                + [W.Label(f"{r:.0%}", layout=W.Layout(width="62px")) for r in sens.ratios]
            )
            self._table = (header, W.VBox(rows, layout=W.Layout(max_height="260px", overflow="auto")))
            self._cells_key = key
            return self._table
        changes = []
        for i, buttons in enumerate(self._buttons):
            for j, b in enumerate(buttons):
                text, color = cell(i, j)
                if b.description != text or b.style.button_color != color:
                    changes.append((b, text, color))
        for k in range(0, len(changes), UPDATE_CHUNK):  # at most ~800 messages a second: the server's limit is 1000
            if k:
                time.sleep(UPDATE_PAUSE)
            for b, text, color in changes[k : k + UPDATE_CHUNK]:
                b.description, b.style.button_color = text, color
        return self._table


class EntropyPanel(Panel):
    title = "Entropy"

    def __init__(self, dashboard):
        super().__init__(dashboard)
        self.button = W.Button(description="Compute", icon="play")
        self.button.on_click(lambda _: self.compute())
        self.busy.buttons.append(self.button)
        self.layer = W.Dropdown(options=[], description="units of")
        self.layer.observe(lambda _: self._units(), names="value")
        self.image = image_widget()
        self.units = image_widget()
        self.result = None

    def widget(self) -> W.Widget:
        return W.VBox([W.HBox([self.button, self.layer]), self.image, self.units])

    def compute(self) -> None:
        def done(ent) -> None:
            self.result = ent
            self.refresh_plots()

        self.busy.run("entropy", self.bench.entropy, done)

    def refresh_plots(self) -> None:
        from ..viz import plot_entropy

        ent = self.result
        self.image.value = render_png(
            lambda ax: plot_entropy(ent, ax=ax), size=(7.0, max(2.5, 0.25 * len(ent.layers) + 1))
        )
        self.layer.options = list(ent.layers)
        self._units()

    def _units(self) -> None:
        if self.result is None or not self.layer.value:
            return
        from ..viz import plot_unit_entropy

        self.units.value = render_png(lambda ax: plot_unit_entropy(self.result, self.layer.value, ax=ax), size=(7, 2.5))

    def refresh(self) -> None:
        if self.result is not None:  # activations change with the weights: recompute what is shown
            self.run_or_defer(self.compute)  # inside another task's completion (Apply, Undo): right after it

    def rerun(self) -> str:
        self.result = self.bench.entropy()
        self.refresh_plots()
        return "entropy: recomputed after the change"


class ConnectivityPanel(Panel):
    title = "Connectivity"

    def __init__(self, dashboard):
        super().__init__(dashboard)
        names = [t.name for t in self.bench.targets if not t.tied_to]
        default = next((t.name for t in self.bench.targets if t.kind in ("conv", "linear")), names[0])
        self.layer = W.Dropdown(options=names, value=default, description="layer")
        self.layer.observe(lambda _: self.refresh(), names="value")
        self.image = image_widget()
        self.summary = W.HTML()
        self.refresh()

    def widget(self) -> W.Widget:
        return W.VBox([self.layer, self.summary, self.image])

    def refresh(self) -> None:
        from ..viz import plot_connectivity_pair

        conn = self.bench.connectivity(self.layer.value)
        self.summary.value = (
            f"{conn.surviving:.1%} of connections survive; dead outputs {int(conn.dead_out.sum())}"
            f", dead inputs {int(conn.dead_in.sum())}"
        )
        self.image.value = render_png(lambda axes: plot_connectivity_pair(conn, axes=axes), size=(8, 3.2), ncols=2)


class ProfilePanel(Panel):
    title = "Profile"

    def __init__(self, dashboard):
        super().__init__(dashboard)
        self.metric = W.ToggleButtons(options=["flops", "params", "latency"], value="flops")
        self.metric.observe(lambda _: self.draw(), names="value")
        self.button = W.Button(
            description="Measure latency", icon="clock-o", tooltip="time every layer (median of 10 runs)"
        )
        self.button.on_click(lambda _: self.measure())
        self.busy.buttons.append(self.button)
        self.image = image_widget()
        self.draw()

    def widget(self) -> W.Widget:
        return W.VBox([W.HBox([self.metric, self.button]), self.image])

    def measure(self) -> None:
        def done(prof) -> None:
            self.dashboard.last_profile = prof
            self.metric.value = "latency"
            self.draw()

        self.busy.run("profiling", lambda: self.bench.profile(batch_size=self.dashboard.batch_size, repeats=10), done)

    def refresh(self) -> None:
        self.draw()

    def draw(self) -> None:
        from ..viz import plot_profile

        prof = self.dashboard.last_profile
        if prof is None:
            return
        if self.metric.value == "latency" and np.isnan(prof.latency_ms).all():
            self.image.layout.display = "none"
            return
        self.image.layout.display = ""
        self.image.value = render_png(
            lambda ax: plot_profile(prof, ax=ax, metric=self.metric.value),
            size=(7.0, max(2.5, 0.25 * len(prof.layers) + 1)),
        )
