"""Effects of pruning, before vs after: attribution maps side by side, accuracy under attack vs eps, per-class
accuracy, confusion delta, the overall vs worst-class curve and the gallery of samples whose prediction flipped.

Single-axis functions take `ax` (default: the current axes); the multi-panel ones take `fig` (or `axes`) and make a
figure only when given none. Every function returns its artists. "Before" is drawn grey and dashed, "after" in
colour and solid, everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import CenteredNorm

from ._common import ALERT_COLOR, category_ticks, legend_below, muted_color, percent_axis, text_color

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from ..analysis.attributions import AttributionResult
    from ..analysis.bias import BiasResult
    from ..analysis.robustness import RobustnessResult

__all__ = [
    "plot_attribution_similarity",
    "plot_attributions",
    "plot_bias",
    "plot_bias_curve",
    "plot_confusion_delta",
    "plot_exemplars",
    "plot_per_class",
    "plot_robustness",
]

AFTER_COLOR = "tab:orange"
ATTR_CMAP = "RdBu_r"  # red: evidence for the target class, blue: against


def _norm_map(a: np.ndarray) -> np.ndarray:
    m = float(np.max(np.abs(a))) if a.size else 0.0
    return a / m if m > 0 else a * 0.0


def _sim_text(att: AttributionResult, i: int) -> str:
    return f"ρ {att.spearman[i]:.2f}\ncos {att.cosine[i]:.2f}\ntop{att.topk_share:.0%} {att.topk[i]:.2f}"


def _image_of(x: np.ndarray) -> np.ndarray:
    """(C, H, W) -> (H, W) for display: the channel when there is one, else the mean over channels."""
    return x[0] if x.shape[0] == 1 else x.mean(0)


def plot_attributions(
    att: AttributionResult, fig: Figure | None = None, *, samples: int = 6, cmap: str = ATTR_CMAP
) -> list[Any]:
    """Per sample (columns): the input, the attribution before and after (rows), each map scaled to its own
    largest magnitude on a red/blue scale centred at 0, and the sample's similarities underneath. Sequences,
    tokens and vectors get per-step bars instead (before grey, after coloured). Makes a figure when `fig` is None.
    Returns the images (or bar containers).

    >>> import numpy as np, matplotlib
    >>> matplotlib.use("Agg")
    >>> from workbench.analysis.attributions import AttributionResult
    >>> r = np.random.default_rng(0)
    >>> a = r.normal(size=(2, 1, 4, 4))
    >>> att = AttributionResult("saliency", "dense", 0, 1, "dense", "step 1", "image", r.random((2, 1, 4, 4)),
    ...     np.array([1, 2]), np.array([1, 2]), np.array([1, 2]), np.array([1, 0]), a, a, np.ones(2), np.ones(2),
    ...     np.ones(2))
    >>> len(plot_attributions(att))
    6
    >>> matplotlib.pyplot.close("all")
    """
    n = min(samples, att.n)
    if n < 1:
        raise ValueError("plot_attributions: the result holds no samples")
    if att.kind == "image":
        return _attr_images(att, fig, n, cmap)
    return _attr_bars(att, fig, n)


def _attr_images(att: AttributionResult, fig: Figure | None, n: int, cmap: str) -> list[Any]:
    if fig is None:
        fig = plt.figure(figsize=(1.25 * n + 1.6, 4.6), layout="constrained")
    axes = np.asarray(fig.subplots(3, n, squeeze=False))
    norm = CenteredNorm(0.0, 1.0)
    out: list[Any] = []
    rows = ("input", f"{att.before_label}", f"{att.after_label}")
    for i in range(n):
        x = _image_of(att.inputs[i])
        out.append(axes[0, i].imshow(x, cmap="gray_r", interpolation="nearest"))
        flipped = att.pred_after[i] != att.pred_before[i]
        axes[0, i].set_title(
            f"label {att.labels[i]}\npred {att.pred_before[i]}→{att.pred_after[i]}",
            fontsize="small",
            color=ALERT_COLOR if flipped else text_color(),
        )
        for r, maps in ((1, att.attr_before), (2, att.attr_after)):
            out.append(axes[r, i].imshow(_norm_map(_image_of(maps[i])), cmap=cmap, norm=norm, interpolation="nearest"))
        axes[2, i].set_xlabel(_sim_text(att, i), fontsize="x-small", linespacing=1.1)
    for r in range(3):
        axes[r, 0].set_ylabel(rows[r], fontsize="small")
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    cb = fig.colorbar(out[-1], ax=axes[1:, :].ravel().tolist(), fraction=0.04, pad=0.02, ticks=[-1, 0, 1])
    cb.set_label("attribution / max |attribution|", fontsize="x-small")
    cb.ax.tick_params(labelsize="x-small")
    fig.suptitle(_attr_title(att), fontsize="medium")
    return out


def _attr_title(att: AttributionResult) -> str:
    s = att.summary
    return (
        f"{att.method} · target: {att.target} class · {att.before_label} vs {att.after_label} · mean ρ "
        f"{s['spearman']['mean']:.2f}, cos {s['cosine']['mean']:.2f}, top{att.topk_share:.0%} {s['topk']['mean']:.2f}"
    )


def _steps(a: np.ndarray) -> np.ndarray:
    """Per-step values of one sample's attribution: sum over features for (steps, features)."""
    return a.reshape(a.shape[0], -1).sum(1) if a.ndim >= 2 else a


def _attr_bars(att: AttributionResult, fig: Figure | None, n: int) -> list[Any]:
    if fig is None:
        fig = plt.figure(figsize=(min(14.0, 2.4 * n + 1.0), 2.8), layout="constrained")
    axes = np.asarray(fig.subplots(1, n, squeeze=False))[0]
    out: list[Any] = []
    for i, ax in enumerate(axes):
        b, a = _norm_map(_steps(att.attr_before[i])), _norm_map(_steps(att.attr_after[i]))
        t = np.arange(len(b))
        out.append(ax.bar(t - 0.2, b, width=0.4, color=muted_color(), label=att.before_label))
        out.append(ax.bar(t + 0.2, a, width=0.4, color=AFTER_COLOR, label=att.after_label))
        ax.axhline(0, color=muted_color(), lw=0.6)
        ax.set_ylim(-1.1, 1.1)
        flipped = att.pred_after[i] != att.pred_before[i]
        ax.set_title(
            f"label {att.labels[i]}, pred {att.pred_before[i]}→{att.pred_after[i]}",
            fontsize="small",
            color=ALERT_COLOR if flipped else text_color(),
        )
        unit = "token" if att.kind == "tokens" else "step" if att.kind == "sequence" else "feature"
        ax.set_xlabel(f"{unit}\n{_sim_text(att, i).replace(chr(10), ' · ')}", fontsize="small")
        if i:
            ax.set_yticklabels([])
    axes[0].set_ylabel("attribution (scaled)")
    axes[0].legend(fontsize="x-small", frameon=False, loc="upper left")
    fig.suptitle(_attr_title(att), fontsize="medium")
    return out


def plot_attribution_similarity(att: AttributionResult, ax: Axes | None = None) -> list[Any]:
    """Per-sample similarities (Spearman ρ, cosine, top-k overlap) as dots with their mean as a bar; 1 = the same
    explanation, 0 = unrelated. Returns [bars, dots]."""
    ax = ax or plt.gca()
    keys = ("spearman", "cosine", "topk")
    values = [att.spearman, att.cosine, att.topk]
    bars = ax.bar(range(3), [float(np.mean(v)) for v in values], color=AFTER_COLOR, alpha=0.35, width=0.6)
    rng = np.random.default_rng(0)
    xs = np.concatenate([i + rng.uniform(-0.18, 0.18, len(v)) for i, v in enumerate(values)])
    dots = ax.scatter(xs, np.concatenate(values), s=12, color=AFTER_COLOR, zorder=3)
    ax.set_xticks(range(3), ["Spearman ρ", "cosine", f"top {att.topk_share:.0%}"][: len(keys)])
    ax.set_ylim(min(-0.05, float(np.min(np.concatenate(values))) - 0.05), 1.05)
    ax.axhline(1.0, color=muted_color(), lw=0.6, ls=":")
    ax.set_ylabel("similarity (1 = same)")
    ax.set_title(f"{att.method}: {att.before_label} vs {att.after_label}, {att.n} samples", fontsize="medium")
    return [bars, dots]


def plot_robustness(rob: RobustnessResult, ax: Axes | None = None, *, flips: bool = False) -> list[Any]:
    """Accuracy (or with ``flips=True`` the share of predictions that flipped) vs eps: one colour per attack,
    before dashed with open markers, after solid. Returns the lines."""
    ax = ax or plt.gca()
    values = rob.flip_rate if flips else rob.accuracy
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    lines: list[Any] = []
    for i, name in enumerate(rob.attacks):
        c = colors[i % len(colors)]
        (lb,) = ax.plot(rob.eps, values[0, i], ls="--", marker="o", mfc="none", color=c, alpha=0.8)
        lb.set_label(f"{name} · {rob.before_label}")
        (la,) = ax.plot(rob.eps, values[1, i], ls="-", marker="o", color=c)
        la.set_label(f"{name} · {rob.after_label}")
        lines += [lb, la]
    ax.set_xlabel("eps (L∞ radius for fgsm/pgd, σ for noise, share of tokens for substitute)")
    ax.set_ylabel("predictions flipped" if flips else "accuracy")
    ax.set_ylim(-0.03, 1.03)
    percent_axis(ax, "y")
    ax.set_xticks(rob.eps, [f"{e:g}" for e in rob.eps])
    ax.grid(alpha=0.3)
    ax.set_title(
        f"{'flips' if flips else 'accuracy'} under attack · {rob.before_label} (dashed) vs {rob.after_label} (solid)"
        f" · {rob.n} samples",
        fontsize="medium",
    )
    legend_below(ax, ncols=min(4, 2 * len(rob.attacks)))
    return lines


def plot_per_class(bias: BiasResult, ax: Axes | None = None, *, hurt: int = 3) -> list[Any]:
    """Per-class accuracy before (grey) and after (colour); the `hurt` most hurt classes are named in red with
    their change. Returns [before bars, after bars]."""
    ax = ax or plt.gca()
    k = len(bias.classes)
    x = np.arange(k)
    before = ax.bar(x - 0.2, bias.per_class_before, width=0.4, color=muted_color(), label=bias.before_label)
    after = ax.bar(x + 0.2, bias.per_class_after, width=0.4, color=AFTER_COLOR, label=bias.after_label)
    category_ticks(ax, list(bias.classes), "x")
    worst = [i for i in bias.hurt[:hurt] if np.isfinite(bias.delta[i]) and bias.delta[i] < 0]
    for i in worst:
        ax.get_xticklabels()[i].set_color(ALERT_COLOR) if i < len(ax.get_xticklabels()) else None
        top = np.nanmax([bias.per_class_before[i], bias.per_class_after[i]])
        ax.annotate(
            f"{100 * bias.delta[i]:+.0f}",
            (i, top),
            xytext=(0, 2),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize="x-small",
            color=ALERT_COLOR,
        )
    ax.set_ylim(0, 1.3)
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    percent_axis(ax, "y")
    ax.set_xlabel("class (most hurt in red, change in points)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"per class: {bias.accuracy_before:.1%} → {bias.accuracy_after:.1%} overall", fontsize="medium")
    ax.legend(fontsize="x-small", frameon=False, ncols=2, loc="upper left")
    return [before, after]


def plot_confusion_delta(bias: BiasResult, ax: Axes | None = None, *, cmap: str = "RdBu_r") -> Any:
    """Confusion matrix after minus before (rows: true class, columns: predicted). Off the diagonal red means more
    of those mistakes; on it, blue means fewer correct. Returns the image."""
    ax = ax or plt.gca()
    d = bias.confusion_delta.astype(float)
    shown = d.copy()
    np.fill_diagonal(shown, -np.diag(d))  # so that red always means worse
    lim = max(1.0, float(np.abs(shown).max()))
    im = ax.imshow(shown, cmap=cmap, norm=CenteredNorm(0.0, lim), interpolation="nearest")
    k = len(bias.classes)
    if k <= 20:
        for i in range(k):
            for j in range(k):
                if d[i, j]:
                    rgba = im.cmap(im.norm(shown[i, j]))
                    lum = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2]
                    ax.text(
                        j,
                        i,
                        f"{int(d[i, j]):+d}",
                        ha="center",
                        va="center",
                        fontsize="xx-small",
                        color="black" if lum > 0.5 else "white",
                    )
    category_ticks(ax, list(bias.classes), "x")
    category_ticks(ax, list(bias.classes), "y")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"confusion change ({bias.after_label} − {bias.before_label})", fontsize="medium")
    cb = ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
    cb.set_label("red = worse", fontsize="x-small")
    cb.ax.tick_params(labelsize="x-small")
    return im


def plot_bias_curve(bias: BiasResult, ax: Axes | None = None) -> list[Any]:
    """Overall and worst-class accuracy over the plans of increasing sparsity (empty without plans). The gap
    between the two lines is what the average hides. Returns [overall line, worst line]."""
    ax = ax or plt.gca()
    if len(bias.curve_sparsity) == 0:
        ax.text(
            0.5,
            0.5,
            "no plans given\n(bench.bias(plans=[0.3, 0.5, 0.7]))",
            ha="center",
            va="center",
            transform=ax.transAxes,
            fontsize="small",
        )
        ax.set_axis_off()
        return []
    (o,) = ax.plot(bias.curve_sparsity, bias.curve_overall, marker="o", color=AFTER_COLOR, label="overall")
    (w,) = ax.plot(bias.curve_sparsity, bias.curve_worst, marker="s", color=ALERT_COLOR, label="worst class")
    for s, v, c in zip(bias.curve_sparsity, bias.curve_worst, bias.curve_worst_class):
        ax.annotate(
            bias.classes[int(c)],
            (s, v),
            xytext=(0, -10),
            textcoords="offset points",
            ha="center",
            fontsize="x-small",
            color=ALERT_COLOR,
        )
    ax.fill_between(bias.curve_sparsity, bias.curve_worst, bias.curve_overall, color=ALERT_COLOR, alpha=0.08)
    ax.set_ylim(-0.08, 1.05)
    percent_axis(ax, "y")
    percent_axis(ax, "x")
    ax.set_xlabel("sparsity of the plan")
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)
    ax.set_title("overall vs worst class", fontsize="medium")
    ax.legend(fontsize="x-small", frameon=False, loc="lower left")
    return [o, w]


def plot_bias(bias: BiasResult, axes: Sequence[Axes] | None = None) -> list[Any]:
    """Per-class accuracy, the confusion change and (when plans were given) overall vs worst-class accuracy, side
    by side; makes a figure when `axes` is None. Returns the artists of each panel."""
    n = 3 if len(bias.curve_sparsity) else 2
    if axes is None:
        _, axes = plt.subplots(
            1, n, figsize=(5.0 * n, 3.8), layout="constrained", gridspec_kw={"width_ratios": [1.3, 1.0, 1.0][:n]}
        )
    axes = list(np.ravel(axes))
    if len(axes) < n:
        raise ValueError(f"plot_bias draws on {n} axes, got {len(axes)}")
    out = [plot_per_class(bias, axes[0]), plot_confusion_delta(bias, axes[1])]
    if n == 3:
        out.append(plot_bias_curve(bias, axes[2]))
    return out


def plot_exemplars(bias: BiasResult, fig: Figure | None = None, *, max_items: int = 16, ncols: int = 8) -> list[Any]:
    """The pruning-identified exemplars: samples whose prediction changed, right-to-wrong first, each titled
    `label: before→after` (red when the new prediction is wrong). Images only; other inputs are listed as text."""
    items = min(max_items, len(bias.exemplar_inputs))
    if fig is None:
        rows = max(1, -(-items // ncols))
        fig = plt.figure(figsize=(1.2 * ncols, 1.35 * rows + 0.5), layout="constrained")
    if items == 0:
        ax = fig.subplots()
        ax.set_axis_off()
        return [ax.text(0.5, 0.5, "no prediction changed", ha="center", va="center", transform=ax.transAxes)]
    rows = -(-items // ncols)
    axes = np.asarray(fig.subplots(rows, ncols, squeeze=False)).ravel()
    out: list[Any] = []
    x = bias.exemplar_inputs
    for i, ax in enumerate(axes):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= items:
            ax.set_axis_off()
            continue
        img = x[i]
        if img.ndim == 3:
            out.append(ax.imshow(_image_of(img), cmap="gray_r", interpolation="nearest"))
        elif img.ndim == 2:
            out.append(ax.imshow(img, cmap="gray_r", aspect="auto", interpolation="nearest"))
        else:
            out.append(ax.text(0.5, 0.5, np.array2string(img, threshold=6), ha="center", va="center", fontsize=6))
        y, b, a = bias.exemplar_labels[i], bias.exemplar_before[i], bias.exemplar_after[i]
        ax.set_title(
            f"{bias.classes[y]}: {bias.classes[b]}→{bias.classes[a]}",
            fontsize="small",
            color=ALERT_COLOR if a != y else "tab:green",
        )
    fig.suptitle(
        f"{bias.n_flipped} predictions changed ({bias.forgotten} right→wrong, {bias.learned} wrong→right); "
        f"title: label: {bias.before_label}→{bias.after_label}",
        fontsize="medium",
    )
    return out
