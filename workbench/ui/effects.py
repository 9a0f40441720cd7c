"""Dashboard tabs for the effects of pruning: "Interpretability", "Robustness" and "Bias".

Each compares two history states (the state before the current step, or dense, vs now) with the analyses in
`workbench.analysis`, in the dashboard's busy runner (progress bar, Stop). Once computed, a tab recomputes after every
change of the model while it is on screen (the dashboard refreshes only the visible tab; "auto" turns that off).
When the change comes from another task (Apply, Undo, ...) the recomputation runs right after that task, in the same
worker, so the two never touch the model at the same time.
"""

from __future__ import annotations

import html
import io
import time
from collections.abc import Callable
from typing import Any

import ipywidgets as W

from ._base import Panel
from .dashboard import register_panel

__all__ = ["BiasPanel", "EffectsPanel", "InterpretabilityPanel", "RobustnessPanel"]


def render_figure(draw: Callable[[Any], Any], size: tuple[float, float]) -> bytes:
    """PNG bytes of a new `matplotlib.figure.Figure` (no pyplot, nothing left open) drawn by `draw(fig)`."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=96, layout="constrained")
    draw(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _image() -> W.Image:
    img = W.Image(format="png", layout=W.Layout(max_width="900px", display="none"))
    img.add_class("wb-plot")
    return img


class EffectsPanel(Panel):
    """Shared behaviour: a Compute button, a "compare with" choice, auto-refresh while visible, deferred runs."""

    title = "effects"
    what = "effects"

    def __init__(self, dashboard):
        super().__init__(dashboard)
        self.compare = W.Dropdown(
            options=[("the step before", "previous"), ("dense", "dense")], value="previous", description="compare with"
        )
        self.button = W.Button(description="Compute", icon="play", button_style="info")
        self.button.on_click(lambda _: self.compute())
        self.button.add_class(f"wb-{self.what}-compute")
        self.busy.buttons.append(self.button)
        self.auto = W.Checkbox(value=True, description="recompute after each change", indent=False)
        self.summary = W.HTML()
        self.summary.add_class(f"wb-{self.what}-summary")
        self.result = None

    def controls(self) -> list[W.Widget]:
        return []

    def images(self) -> list[W.Widget]:
        return []

    def widget(self) -> W.Widget:
        head = W.HBox([*self.controls(), self.compare, self.button, self.auto], layout=W.Layout(flex_flow="row wrap"))
        return W.VBox([head, self.summary, *self.images()])

    def pair(self) -> dict[str, int] | None:
        pos = self.bench.store.position
        if pos == 0:
            return None
        return {"before": 0 if self.compare.value == "dense" else pos - 1, "after": pos}

    def work(self, pair: dict[str, int]) -> Any:
        raise NotImplementedError

    def show(self, result: Any) -> None:
        raise NotImplementedError

    def _done(self, result: Any) -> None:
        self.result = result
        self.show(result)

    def compute(self) -> None:
        pair = self.pair()
        if pair is None:
            self.summary.value = (
                "<i>No pruning step is applied yet: apply a plan, then compare it with the model before.</i>"
            )
            self.log(f"{self.title}: apply a plan first; there is nothing to compare with yet", "warn")
            return
        self.busy.run(self.title.lower(), lambda: self.work(pair), self._done)

    def refresh(self) -> None:
        """After the model changed (only called while this tab is on screen)."""
        if self.result is not None and self.auto.value:
            self.run_or_defer(self.compute)  # inside another task's completion: right after it, in the same worker

    def rerun(self) -> str | None:
        pair = self.pair()
        if pair is None:
            self.summary.value = "<i>Back at the dense model: nothing to compare.</i>"
            for img in self.images():
                img.layout.display = "none"
            return None
        self.busy.label.value = f"{self.title.lower()}..."
        t0 = time.perf_counter()
        self._done(self.work(pair))
        return f"{self.title.lower()}: recomputed after the change in {time.perf_counter() - t0:.2f} s"


class InterpretabilityPanel(EffectsPanel):
    title = "Interpretability"
    what = "interpretability"

    def __init__(self, dashboard):
        from ..analysis.attributions import available_attributions

        super().__init__(dashboard)
        self.method = W.Dropdown(options=available_attributions(), value="integrated_gradients", description="method")
        self.samples = W.BoundedIntText(value=8, min=1, max=64, description="samples", layout=W.Layout(width="160px"))
        self.target = W.Dropdown(options=["dense", "label"], value="dense", description="target")
        self.image = _image()
        self.similarity = _image()

    def controls(self) -> list[W.Widget]:
        return [self.method, self.samples, self.target]

    def images(self) -> list[W.Widget]:
        return [self.image, self.similarity]

    def work(self, pair):
        return self.bench.attributions(
            self.method.value, int(self.samples.value), target=self.target.value, progress=self.busy.tick, **pair
        )

    def show(self, att) -> None:
        from ..viz import plot_attribution_similarity, plot_attributions

        n = min(8, att.n)
        size = (1.25 * n + 1.6, 4.6) if att.kind == "image" else (min(14.0, 2.4 * n + 1.0), 2.8)
        self.image.value = render_figure(lambda fig: plot_attributions(att, fig, samples=n), size)
        self.similarity.value = render_figure(lambda fig: plot_attribution_similarity(att, fig.subplots()), (4.2, 2.8))
        self.image.layout.display = self.similarity.layout.display = ""
        s = att.summary
        self.summary.value = (
            f"<b>{html.escape(att.method)}</b>, {att.n} samples, {att.before_label} vs {att.after_label}: "
            f"mean Spearman ρ <b>{s['spearman']['mean']:.2f}</b>, cosine {s['cosine']['mean']:.2f}, "
            f"top-{att.topk_share:.0%} overlap {s['topk']['mean']:.2f} (1 = same explanation); "
            f"same prediction on {s['agreement']:.0%} of them"
        )


class RobustnessPanel(EffectsPanel):
    title = "Robustness"
    what = "robustness"

    def __init__(self, dashboard):
        from ..analysis.robustness import available_attacks

        super().__init__(dashboard)
        from ..analysis.states import primary

        kind = "float"
        x = self.bench.example_inputs
        try:
            x = primary(x)[1] if x is not None else None  # of a dict of model inputs: input_ids, pixel_values, ...
        except Exception:
            x = None
        if x is not None and not x.is_floating_point():
            kind = "int"
        options = available_attacks(kind)
        self.attacks = W.SelectMultiple(
            options=options, value=tuple(options), description="attacks", rows=min(3, len(options)) or 1
        )
        default = "0, 0.1, 0.25, 0.5" if kind == "int" else "0, 0.05, 0.1, 0.2"
        self.eps = W.Text(value=default, description="eps", layout=W.Layout(width="240px"))
        self.samples = W.BoundedIntText(
            value=256, min=1, max=100_000, description="samples", layout=W.Layout(width="180px")
        )
        self.image = _image()

    def controls(self) -> list[W.Widget]:
        return [self.attacks, self.eps, self.samples]

    def images(self) -> list[W.Widget]:
        return [self.image]

    def _eps(self) -> list[float]:
        try:
            return [float(v) for v in self.eps.value.replace(";", ",").split(",") if v.strip()]
        except ValueError:
            from ..analysis.robustness import AttackError

            raise AttackError(
                f"eps must be numbers separated by commas, e.g. 0, 0.05, 0.1; got {self.eps.value!r}"
            ) from None

    def work(self, pair):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # fewer samples than asked: the summary says how many were used
            return self.bench.robustness(
                tuple(self.attacks.value),
                self._eps(),
                samples=int(self.samples.value),
                progress=self.busy.tick,
                **pair,
            )

    def show(self, rob) -> None:
        from ..viz import plot_robustness

        self.image.value = render_figure(lambda fig: plot_robustness(rob, fig.subplots()), (7.5, 4.2))
        self.image.layout.display = ""
        j = len(rob.eps) - 1
        parts = [
            f"{a}: {rob.accuracy[0, i, j]:.1%} → <b>{rob.accuracy[1, i, j]:.1%}</b>" for i, a in enumerate(rob.attacks)
        ]
        self.summary.value = (
            f"clean accuracy {rob.clean_accuracy[0]:.1%} ({rob.before_label}) → <b>{rob.clean_accuracy[1]:.1%}</b> "
            f"({rob.after_label}); at eps {rob.eps[j]:g}: " + ", ".join(parts) + f" · {rob.n} samples"
        )


class BiasPanel(EffectsPanel):
    title = "Bias"
    what = "bias"

    def __init__(self, dashboard):
        super().__init__(dashboard)
        self.curve = W.Checkbox(value=True, description="overall vs worst class at 30/50/70/90% sparsity", indent=False)
        self.image = _image()
        self.gallery = _image()

    def controls(self) -> list[W.Widget]:
        return [self.curve]

    def images(self) -> list[W.Widget]:
        return [self.image, self.gallery]

    def work(self, pair):
        plans = (0.3, 0.5, 0.7, 0.9) if self.curve.value else None
        return self.bench.bias(plans=plans, progress=self.busy.tick, **pair)

    def show(self, bias) -> None:
        from ..viz import plot_bias, plot_exemplars

        n = 3 if len(bias.curve_sparsity) else 2
        ratios = [1.3, 1.0, 1.0][:n]
        self.image.value = render_figure(
            lambda fig: plot_bias(bias, fig.subplots(1, n, gridspec_kw={"width_ratios": ratios})), (4.6 * n, 3.8)
        )
        items = min(16, len(bias.exemplar_inputs))
        rows = max(1, -(-items // 8))
        self.gallery.value = render_figure(
            lambda fig: plot_exemplars(bias, fig, max_items=16), (9.6, 1.35 * rows + 0.5)
        )
        self.image.layout.display = self.gallery.layout.display = ""
        hurt = [i for i in bias.hurt[:3] if bias.delta[i] < 0]
        named = ", ".join(f"{bias.classes[i]} ({100 * bias.delta[i]:+.0f} points)" for i in hurt) or "none"
        gap = ""
        if bias.train_before == bias.train_before:  # not NaN
            gap = f"; train−val gap {bias.gap_before:+.1%} → {bias.gap_after:+.1%}"
        self.summary.value = (
            f"accuracy {bias.accuracy_before:.1%} → <b>{bias.accuracy_after:.1%}</b>; classes hurt most: {named}; "
            f"{bias.n_flipped} predictions changed ({bias.forgotten} right→wrong){gap}"
        )


for _name, _cls in (("interpretability", InterpretabilityPanel), ("robustness", RobustnessPanel), ("bias", BiasPanel)):
    register_panel(_name, _cls, overwrite=True)
