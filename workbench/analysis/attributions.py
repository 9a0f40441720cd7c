"""Attributions before vs after pruning: does the pruned model still look at the same evidence?

For a few samples, a captum attribution method (`integrated_gradients`, `saliency`, `input_x_gradient`,
`gradient_shap`, `occlusion`; `register_attribution` in `workbench.analysis.attribution_methods` adds yours)
explains the same target class in two history states of the live model (by default the state before the current
step and now). Each state is visited as a transaction (`workbench.analysis.states.at`); the model is never copied
and is restored bitwise.

Per sample the two maps are compared by the Spearman rank correlation of their magnitudes over the features where
either map is non-zero (is the importance ranking the same?), the cosine of the signed maps (same direction?) and
the overlap of their top 10% features by magnitude. A constant map (a model that no longer depends on its input) has similarity 0 with anything but an
identical map. Integer token inputs are attributed on the output of the model's `nn.Embedding` (one value per token).

>>> import torch, workbench as wb
>>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
>>> bench = wb.Workbench(model, [(torch.rand(8, 1, 4, 4), torch.randint(0, 3, (8,)))])
>>> _ = bench.apply(wb.Plan.uniform(0.5))
>>> att = bench.attributions("saliency", samples=4)
>>> att.kind, att.attr_before.shape, round(float(att.summary["spearman"]["mean"]), 2) <= 1.0
('image', (4, 1, 4, 4), True)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import WorkbenchError
from ..evaluate import eval_mode
from ._graph import clone_with
from .attribution_methods import (  # noqa: F401  (importable from here as before)
    _METHODS,
    AttributionFn,
    _get,
    available_attributions,
    register_attribution,
)
from .sensitivity import _bar
from .states import (
    at,
    default_pair,
    grad_context,
    input_embeddings,
    label_of,
    logits,
    prediction,
    primary,
    rebuild,
    take,
)

__all__ = [
    "AttributionResult",
    "attributions",
    "available_attributions",
    "register_attribution",
    "similarity",
]


# similarity -------------------------------------------------------------------------------------------------
def _ranks(a: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(a, method="average")


def similarity(a: np.ndarray, b: np.ndarray, topk: float = 0.1) -> dict[str, np.ndarray]:
    """Per row of two (N, F) attribution arrays: ``spearman`` (rank correlation of |a| and |b| over the features
    where either is non-zero), ``cosine`` (of the signed maps) and ``topk`` (share of the top `topk` features by magnitude found in both).

    >>> a = np.array([[1.0, 2.0, 3.0, 4.0]])
    >>> {k: float(v[0]) for k, v in similarity(a, a, topk=0.5).items()}
    {'spearman': 1.0, 'cosine': 1.0, 'topk': 1.0}
    >>> float(similarity(a, np.zeros_like(a))["spearman"][0])
    0.0
    """
    a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    b = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    n, f = a.shape
    same = np.all(a == b, axis=1)
    const_a = np.ptp(np.abs(a), axis=1) == 0
    const_b = np.ptp(np.abs(b), axis=1) == 0
    degenerate = const_a | const_b
    spearman = np.zeros(n)
    for i in range(n):  # features where both maps are exactly 0 (e.g. IG where input == baseline) say nothing
        used = (a[i] != 0) | (b[i] != 0)
        if used.sum() < 2:
            continue
        ra, rb = _ranks(np.abs(a[i, used])), _ranks(np.abs(b[i, used]))
        ra, rb = ra - ra.mean(), rb - rb.mean()
        den = np.sqrt((ra * ra).sum() * (rb * rb).sum())
        spearman[i] = (ra * rb).sum() / den if den > 0 else 0.0
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    ok = (na > 0) & (nb > 0)
    cosine = np.where(ok, (a * b).sum(1) / np.where(ok, na * nb, 1.0), 0.0)
    k = max(1, round(topk * f))
    ta = np.argsort(-np.abs(a), axis=1, kind="stable")[:, :k]
    tb = np.argsort(-np.abs(b), axis=1, kind="stable")[:, :k]
    top = np.array([len(np.intersect1d(ta[i], tb[i])) / k for i in range(n)])
    out = {"spearman": spearman, "cosine": cosine, "topk": top}
    for key in out:  # a constant map carries no ranking: similar only to an identical map
        out[key] = np.clip(np.where(degenerate, np.where(same, 1.0, 0.0), out[key]), -1.0, 1.0)
    return out


# the analysis -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AttributionResult:
    """Attributions of the same samples and targets in two history states, and their similarity per sample.

    `attr_before`/`attr_after` are shaped like the inputs (one value per token for `kind == "tokens"`);
    `kind` says how to draw them: "image" (C, H, W), "sequence" (steps, features), "tokens" or "vector".
    """

    method: str
    target: str
    before: int
    after: int
    before_label: str
    after_label: str
    kind: str
    inputs: np.ndarray
    labels: np.ndarray
    targets: np.ndarray
    pred_before: np.ndarray
    pred_after: np.ndarray
    attr_before: np.ndarray
    attr_after: np.ndarray
    spearman: np.ndarray
    cosine: np.ndarray
    topk: np.ndarray
    topk_share: float = 0.1
    seconds: float = 0.0

    @property
    def n(self) -> int:
        return len(self.labels)

    @property
    def agreement(self) -> float:
        """Share of samples whose predicted class is the same in both states."""
        return float(np.mean(self.pred_before == self.pred_after))

    @property
    def summary(self) -> dict[str, Any]:
        """Mean, median and minimum of each similarity over the samples, and the prediction agreement."""
        out: dict[str, Any] = {
            k: {"mean": float(np.mean(v)), "median": float(np.median(v)), "min": float(np.min(v))}
            for k, v in (("spearman", self.spearman), ("cosine", self.cosine), ("topk", self.topk))
        }
        out["agreement"] = self.agreement
        return out

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        return {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in d.items()} | {"summary": self.summary}


class _Given(nn.Module):
    """Stands in for an embedding layer: the inputs already are its output."""

    def forward(self, x: Tensor) -> Tensor:
        return x


def _embedding_view(model: nn.Module, x: Tensor, embedding: str | None) -> tuple[nn.Module, nn.Module, str]:
    """For integer inputs: a structural clone of `model` that takes the embedding's output instead of tokens,
    the embedding module, and its name. Checked on `x` to compute what the model computes."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Embedding)]
    if embedding is None:
        if not names:
            raise WorkbenchError(
                f"the inputs are integers ({x.dtype}), which have no gradient, and the model has no nn.Embedding "
                "to attribute on; pass float inputs or embedding='<name of the layer that embeds the tokens>'"
            )
        embedding = names[0]
    emb = model.get_submodule(embedding)
    clone = clone_with(model, {})
    owner, _, leaf = embedding.rpartition(".")
    setattr(clone.get_submodule(owner) if owner else clone, leaf, _Given())
    with torch.no_grad():
        ok = torch.allclose(logits(clone, emb(x)), logits(model, x), atol=1e-5, rtol=1e-4)
    if not ok:
        raise WorkbenchError(
            f"attributing on embedding {embedding!r} needs the tokens to enter the model through it directly; "
            f"name the right layer with embedding=... (nn.Embedding layers: {names})"
        )
    return clone, emb, embedding


def _embeds_view(model: nn.Module, key: str, ids: Tensor, x: dict, inputs) -> tuple[Tensor, Callable]:
    """For token ids in a dict of keyword inputs (a Hugging Face model): the input embeddings of `ids` and a forward
    that feeds them as ``inputs_embeds`` (checked on `x` to compute what the model computes)."""
    import inspect

    emb = input_embeddings(model)
    takes = "inputs_embeds" in inspect.signature(model.forward).parameters
    if emb is None or not takes:
        raise WorkbenchError(
            f"the {key!r} inputs are integers, which have no gradient, and {type(model).__name__} takes no "
            "inputs_embeds to attribute on; pass float inputs, or a model with get_input_embeddings() and an "
            "inputs_embeds argument (every Hugging Face model)"
        )

    def forward(e: Tensor, *ex: Tensor) -> Tensor:
        return prediction(logits(model, inputs("inputs_embeds", e, ex)))

    with torch.no_grad():
        e = emb(ids).detach()
        rest = {k: v for k, v in x.items() if k != key and isinstance(v, Tensor)}
        ok = torch.allclose(forward(e, *rest.values()), prediction(logits(model, x)), atol=1e-5, rtol=1e-4)
    if not ok:
        raise WorkbenchError(
            f"{type(model).__name__} computes other outputs from inputs_embeds than from {key!r}; attributions on "
            "its embeddings would explain another model"
        )
    return e, forward


def attributions(
    bench,
    method: str = "integrated_gradients",
    samples: int = 16,
    *,
    before: int | None = None,
    after: int | None = None,
    target: str | int = "dense",
    data: Iterable | None = None,
    topk: float = 0.1,
    embedding: str | None = None,
    seed: int = 0,
    progress: Callable[[int, int], None] | bool | None = None,
    **options: Any,
) -> AttributionResult:
    """Attributions of the first `samples` samples of `data` (default: the evaluation data) in history states
    `before` and `after` (default: the state before the current step and now), with their similarity.

    `target` is the class explained: ``"dense"`` (what the dense model predicts, the default), ``"before"`` (what
    the `before` state predicts), ``"label"`` or one class index for all. Extra keywords go to the method (e.g.
    ``n_steps=64`` for integrated gradients, ``window=(1, 2, 2)`` for occlusion).
    """
    t0 = time.perf_counter()
    fn = _get(method)
    b, a = default_pair(bench, before, after)
    if not 0 < topk <= 1:
        raise WorkbenchError(f"topk must be a share in (0, 1], got {topk}")
    if isinstance(target, str) and target not in ("dense", "before", "label"):
        raise WorkbenchError(f"target must be 'dense', 'before', 'label' or a class index, got {target!r}")
    model = bench.model
    data = bench.data if data is None else data
    x, y = take(data, samples, model, "samples", adapter=bench.adapter)
    key, p, rest = primary(x)  # one input tensor, or of a dict of model inputs pixel_values / input_ids / ...
    tokens = not p.is_floating_point()
    moving = [k for k, v in rest.items() if isinstance(v, Tensor)]  # captum repeats them with its expanded batch
    fixed = {k: v for k, v in rest.items() if k not in moving}
    extra = tuple(rest[k] for k in moving)
    if target == "label" and y.dim() != 1:
        raise WorkbenchError(
            "target='label' needs one class label per sample; this data has labels of shape "
            f"{tuple(y.shape)} (a language model's): explain target='dense', 'before' or a class (token) index"
        )

    def inputs(k: str | None, v: Tensor, ex: tuple) -> Any:
        return rebuild(k, v, {**fixed, **dict(zip(moving, ex))})

    states = [b, a]
    total, done = len(states) + 1, 0
    bar = _bar(progress, total, f"attributions ({method})")  # True: a tqdm bar; a callback; False/None: nothing

    def tick() -> None:
        nonlocal done
        done += 1
        bar(1, close=done == total)

    if callable(progress):
        progress(0, total)
    maps: dict[int, np.ndarray] = {}
    preds: dict[int, np.ndarray] = {}
    with eval_mode(model), grad_context(model):
        if isinstance(target, str) and target in ("dense", "before"):
            with at(bench, 0 if target == "dense" else b), torch.no_grad():
                targets = prediction(logits(model, x)).argmax(1)
        elif target == "label":
            targets = y
        else:
            targets = torch.full((len(p),), int(target), dtype=torch.long, device=p.device)
        tick()
        for s in states:
            with at(bench, s):
                with torch.no_grad():
                    preds[s] = prediction(logits(model, x)).argmax(1).cpu().numpy()
                if tokens and key is None:
                    view, emb, _ = _embedding_view(model, p, embedding)
                    with torch.no_grad():
                        inp = emb(p).detach()
                    forward = lambda e, view=view: prediction(logits(view, e))  # noqa: E731
                elif tokens:
                    inp, forward = _embeds_view(model, key, p, x, inputs)
                else:
                    inp = p
                    forward = lambda v, *ex: prediction(logits(model, inputs(key, v, ex)))  # noqa: E731
                baseline = torch.zeros_like(inp[:1]) if tokens else torch.full_like(inp[:1], float(p.min()))
                opts = {**options, "additional_forward_args": extra} if extra and key is not None else options
                out = fn(forward, inp.clone().requires_grad_(), targets, baseline, seed, **opts).detach()
                if tokens:
                    out = out.sum(-1)  # one value per token
                maps[s] = out.float().cpu().numpy()
            tick()
    sim = similarity(maps[b].reshape(len(p), -1), maps[a].reshape(len(p), -1), topk)
    return AttributionResult(
        method=method,
        target=str(target),
        before=b,
        after=a,
        before_label=label_of(bench, b),
        after_label=label_of(bench, a),
        kind=_kind(p),
        inputs=p.detach().cpu().numpy(),
        labels=y.cpu().numpy(),
        targets=targets.cpu().numpy(),
        pred_before=preds[b],
        pred_after=preds[a],
        attr_before=maps[b],
        attr_after=maps[a],
        spearman=sim["spearman"],
        cosine=sim["cosine"],
        topk=sim["topk"],
        topk_share=float(topk),
        seconds=time.perf_counter() - t0,
    )


def _kind(x: Tensor) -> str:
    if not x.is_floating_point():
        return "tokens"
    shape = tuple(x.shape[1:])
    if len(shape) == 3 and shape[1] > 1 and shape[2] > 1:
        return "image"
    if len(shape) == 2:
        return "sequence"
    return "vector" if len(shape) == 1 else "image" if len(shape) == 3 else "vector"
