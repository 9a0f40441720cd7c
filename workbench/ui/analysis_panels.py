"""The dashboard's analysis panels: sensitivity (heatmap and a table of clickable cells), entropy, connectivity and
profile. Each composes `workbench.viz` plots rendered to PNG image widgets, re-rendered in place."""

from __future__ import annotations

import time

import ipywidgets as W
import numpy as np

from ..criteria import available as criteria_available
from ..masks.granularity import available_granularities
from ._base import Panel, image_widget, render_png
from .cells import CellTable

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
        self.redraw_every = 0.5  # seconds between heatmap redraws while a refine scan runs, at least
        self._drawn = 0.0
        self._draw_cost = 0.0  # seconds the last redraw took: redraws take at most a fifth of a scan's time
        self.scan_button = W.Button(description="Scan", icon="play")
        self.scan_button.on_click(lambda _: self.scan())
        self.busy.buttons.append(self.scan_button)
        self.image = image_widget()
        self.source = W.HTML()  # what the heatmap shows: which scan, by which engine, how long it took
        self.source.add_class("wb-sensitivity-source")
        self.shown = None  # the map the heatmap and the table show
        self.table = CellTable(self._clicked)  # layers x ratios, one widget (see `workbench.ui.cells`)
        self.note = W.HTML(CLICK_NOTE)
        self.refresh()

    def widget(self) -> W.Widget:
        return W.VBox(
            [
                W.HBox([self.granularity, self.criterion, self.mode, self.scan_button]),
                self.source,
                self.image,
                self.note,
                self.table,
            ]
        )

    def scan(self) -> None:
        g, c, mode = self.granularity.value, self.criterion.value, self.mode.value
        ratios = np.round(np.linspace(0.1, 0.9, 9), 2)

        def work():  # estimates with the Fisher term: first order alone shows whole layers "improving" when pruned
            extra = {"second_order": True} if mode != "exact" else {"executor": self.dashboard.executor}
            if mode == "refine":  # cells near the sliders' ratios first; heatmap and table fill in as they land
                self._drawn = 0.0
                extra.update(around=self.dashboard.editor.plan(), on_update=self._landed)
            return self.bench.sensitivity(ratios, g, c, mode=mode, progress=self.busy.tick, **extra)

        def done(sens) -> None:
            self.refresh()
            self.dashboard.editor.update_preview()

        self.busy.run(f"{mode} sensitivity scan", work, done)

    def _landed(self, sens) -> None:
        """A refine scan's map after another exact cell: the heatmap, the table (its exact cells marked •) and the
        caption redrawn, at most every `redraw_every` seconds."""
        now = time.perf_counter()
        wait = self.redraw_every and max(self.redraw_every, 4 * self._draw_cost)  # 0: after every cell
        if now - self._drawn >= wait:
            self.refresh(sens)
            self._drawn = time.perf_counter()
            self._draw_cost = self._drawn - now

    def refresh(self, sens=None) -> None:
        sens = sens if sens is not None else self.bench.last_sensitivity
        self.shown = sens
        self.note.layout.display = "none" if sens is None else ""  # no table, nothing to click
        if sens is None:
            self.image.layout.display = "none"
            self.table.show([], [], [])
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
        self.table.show(sens.layers, [f"{r:.0%}" for r in sens.ratios], self._cells(sens))
        self.source.value = caption  # once, last: the browser never shows a count the map does not show yet

    def _clicked(self, i: int, j: int) -> None:
        """A click on a cell of the table: that layer's slider to that cell's ratio."""
        sens = self.shown
        if sens is not None:
            self.dashboard.editor.set_ratio(sens.layers[i], float(sens.ratios[j]))

    @staticmethod
    def _cells(sens) -> list[list[tuple[str, str, str]]]:
        """Each cell's text (its value, "•" first where a refine scan measured it exactly, "—" where there is no
        value), background (the heatmap's colour map, centred on 0) and text colour (white on dark backgrounds)."""
        import matplotlib as mpl

        vals = sens.values
        lim = float(np.nanmax(np.abs(vals))) if np.isfinite(vals).any() else 1.0
        norm = mpl.colors.TwoSlopeNorm(vcenter=0.0, vmin=-lim or -1, vmax=lim or 1)
        cmap = mpl.colormaps["RdBu" if sens.higher_is_better else "RdBu_r"]
        rgb = cmap(norm(np.nan_to_num(vals)))[..., :3]
        dark = (rgb @ np.array([0.299, 0.587, 0.114]) < 0.45).tolist()
        code = (np.round(rgb * 255).astype(np.int64) @ np.array([1 << 16, 1 << 8, 1])).tolist()  # 0xRRGGBB
        marked = sens.exact if sens.mode == "refine" and sens.exact is not None else np.zeros(vals.shape, bool)
        return [
            [
                ("—", "#cccccc", "#000000")
                if v != v  # NaN
                else (f"{'•' if m else ''}{v:+.3f}", f"#{c:06x}", "#ffffff" if d else "#000000")
                for v, c, d, m in zip(row, code_row, dark_row, marked_row)
            ]
            for row, code_row, dark_row, marked_row in zip(vals.tolist(), code, dark, marked.tolist())
        ]


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
