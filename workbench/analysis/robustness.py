"""Robustness before vs after pruning: accuracy under adversarial attacks and input noise, as eps grows.

Attacks come from a registry (`workbench.analysis.attacks`, `register_attack`): `fgsm` (one signed-gradient
step, Goodfellow et al. 2015) and `pgd` (iterated steps projected to the L-inf eps-ball around the input, random
start, Madry et al. 2018), both run by `captum.robust`; `noise` (Gaussian noise of standard deviation eps)
measures sensitivity to input perturbations; `substitute` (a share eps of the tokens replaced by random ones) is
the one attack for integer token inputs.
Perturbed inputs are clamped to the data's range (given, declared by the data as `x_range`, or measured on it).
Every random draw is seeded, and both states see the same noise, so numbers are reproducible and comparable.

Each state is visited as a transaction (`workbench.analysis.states.at`): the model is never copied and is restored
bitwise. At eps = 0 every attack is the clean input, so the accuracy there equals `bench.evaluate()`'s.
`robust_accuracy(attack, eps)` is a metric ``(model, data) -> float`` for `bench.sensitivity(metric=...)`.

>>> import torch, workbench as wb
>>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
>>> bench = wb.Workbench(model, [(torch.rand(32, 1, 4, 4), torch.randint(0, 3, (32,)))])
>>> _ = bench.apply(wb.Plan.uniform(0.5))
>>> rob = bench.robustness(attacks=("fgsm", "noise"), eps=(0, 0.1))
>>> rob.accuracy.shape, bool(rob.accuracy[1, 0, 0] == bench.evaluate()["accuracy"])
((2, 2, 2), True)
"""

from __future__ import annotations

import time
import warnings
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..adapter import take as take_inputs
from ..errors import DataError, WorkbenchWarning
from ..evaluate import _split, batches, eval_mode, model_device
from .attacks import (  # noqa: F401  (importable from here as before)
    _ATTACKS,
    Attack,
    AttackError,
    AttackFn,
    Settings,
    _get,
    available_attacks,
    register_attack,
)
from .sensitivity import _bar
from .states import (
    at,
    data_range,
    default_pair,
    grad_context,
    input_embeddings,
    label_of,
    logits,
    primary,
    rebuild,
)

__all__ = [
    "Attack",
    "AttackError",
    "RobustnessResult",
    "available_attacks",
    "register_attack",
    "robust_accuracy",
    "robustness",
]


@dataclass(frozen=True)
class RobustnessResult:
    """`accuracy[s, i, j]`: accuracy of state s (0: `before`, 1: `after`) under attack `attacks[i]` at `eps[j]`;
    `flip_rate` the share of samples whose prediction differs from that state's clean prediction."""

    attacks: tuple[str, ...]
    eps: np.ndarray
    before: int
    after: int
    before_label: str
    after_label: str
    accuracy: np.ndarray
    flip_rate: np.ndarray
    clean_accuracy: np.ndarray
    n: int
    x_range: tuple[float, float]
    seed: int = 0
    steps: int = 10
    seconds: float = 0.0

    @property
    def labels(self) -> tuple[str, str]:
        return self.before_label, self.after_label

    def value(self, attack: str, eps: float, state: str = "after") -> float:
        """Accuracy of ``state`` ("before" or "after") under `attack` at `eps` (one of the computed eps)."""
        i = self.attacks.index(attack)
        j = int(np.flatnonzero(np.isclose(self.eps, eps))[0])
        return float(self.accuracy[0 if state == "before" else 1, i, j])

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        return {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in d.items()}


def _check_eps(eps: Iterable[float]) -> np.ndarray:
    arr = np.asarray(list(eps), dtype=float)
    if arr.size == 0:
        raise AttackError("eps needs at least one value, e.g. eps=(0, 0.05, 0.1)")
    bad = [float(e) for e in arr if not np.isfinite(e) or e < 0]
    if bad:
        raise AttackError(f"eps must be >= 0 (the size of the perturbation), got {bad}")
    return arr


def _settings(model: nn.Module, data: Iterable, x_range, steps: int, step_size, seed: int) -> Settings:
    if steps < 1:
        raise AttackError(f"steps (PGD iterations) must be >= 1, got {steps}")
    device = model_device(model)
    lo, hi = (float(x_range[0]), float(x_range[1])) if x_range is not None else data_range(data, device)
    if not lo <= hi:
        raise AttackError(f"x_range must be (low, high) with low <= high, got {(lo, hi)}")
    emb = input_embeddings(model)  # a Hugging Face model: its token embeddings, not the positions'
    if emb is not None:
        vocab = emb.num_embeddings
    else:
        vocab = max((m.num_embeddings for m in model.modules() if isinstance(m, nn.Embedding)), default=0)
    return Settings(lo, hi, steps, step_size, seed, vocab)


def _check_applies(attacks: Sequence[Attack], x: Any) -> None:
    if not isinstance(x, Tensor):
        raise DataError("robustness needs one input tensor per batch; wrap a multi-input model to take one tensor")
    kind = "float" if x.is_floating_point() else "int"
    wrong = [a.name for a in attacks if a.inputs != kind]
    if wrong:
        fits = available_attacks(kind)
        what = "integer token inputs have no gradient" if kind == "int" else "these inputs are continuous"
        raise AttackError(
            f"attack(s) {wrong} do not apply here: {what} ({x.dtype}). Attacks that apply: {fits}. "
            + (
                "To see what the model attends to, use bench.attributions(), which works on the embeddings."
                * (kind == "int")
            )
        )


def _batch_gen(device: torch.device, seed: int, attack: str, eps: float, batch: int) -> torch.Generator:
    """The same generator for the same (seed, attack, eps, batch) in every state and every run."""
    key = zlib.crc32(f"{seed}/{attack}/{eps!r}/{batch}".encode())
    return torch.Generator(device=device).manual_seed(key)


def _accuracy_under(
    model: nn.Module,
    data: Iterable,
    attacks: Sequence[Attack],
    eps: np.ndarray,
    s: Settings,
    samples: int | None,
    tick: Callable[[], None] | None = None,
    adapter: Any = None,
) -> tuple[np.ndarray, np.ndarray, float, int]:
    """Accuracy and flip rate (attacks x eps) of `model` as it is now, and its clean accuracy and sample count
    (`adapter`: the bench's, which splits its batches)."""
    device = model_device(model)
    hits = np.zeros((len(attacks), len(eps)))
    flips = np.zeros((len(attacks), len(eps)))
    clean_hits, n = 0.0, 0
    with eval_mode(model), grad_context(model):
        for b, (batch_x, y) in enumerate(batches(data, model, adapter=adapter)):
            if samples is not None and n >= samples:
                break
            if samples is not None and n + len(y) > samples:
                batch_x, y = take_inputs(batch_x, samples - n), y[: samples - n]
            key, x, rest = primary(batch_x, f"batch {b}")  # of a dict of model inputs: pixel_values, input_ids, ...
            if b == 0:
                _check_applies(attacks, x)
                if y.dim() != 1:
                    raise DataError(
                        f"robustness counts correct class predictions: it needs one class label per sample, got labels "
                        f"of shape {tuple(y.shape)} (a language model's); its accuracy under attack is not measured yet"
                    )

            def forward(v: Tensor, key=key, rest=rest) -> Tensor:
                return logits(model, rebuild(key, v, rest))

            with torch.no_grad():
                clean = forward(x).argmax(1)
            clean_hits += float((clean == y).sum())
            for i, attack in enumerate(attacks):
                for j, e in enumerate(eps):
                    if e == 0:  # the clean input, exactly
                        hits[i, j] += float((clean == y).sum())
                        continue
                    gen = _batch_gen(device, s.seed, attack.name, float(e), b)
                    try:
                        xa = attack.fn(forward, x.detach().clone(), y, float(e), s, gen).detach()
                    except RuntimeError as err:
                        if "does not require grad" in str(err) or "not have been used in the graph" in str(err):
                            raise AttackError(
                                f"{attack.name} needs the gradient of the loss w.r.t. the inputs, but the model's "
                                f"output does not depend on them differentiably ({err}); attacks that need no "
                                f"gradient: ['noise']"
                            ) from err
                        raise
                    with torch.no_grad():
                        pred = forward(xa).argmax(1)
                    hits[i, j] += float((pred == y).sum())
                    flips[i, j] += float((pred != clean).sum())
                    if tick is not None:
                        tick()
            n += len(y)
    if n == 0:
        raise DataError("the data yielded no samples; pass a non-empty DataLoader of (inputs, labels)")
    return hits / n, flips / n, clean_hits / n, n


def robustness(
    bench,
    attacks: Sequence[str] | str | None = None,
    eps: Iterable[float] | None = None,
    *,
    before: int | None = None,
    after: int | None = None,
    data: Iterable | None = None,
    samples: int | None = None,
    x_range: tuple[float, float] | None = None,
    steps: int = 10,
    step_size: float | None = None,
    seed: int = 0,
    progress: Callable[[int, int], None] | bool | None = None,
) -> RobustnessResult:
    """Accuracy under each attack at each eps, in history states `before` and `after` (default: the state before
    the current step and now), on `data` (default: the evaluation data; its first `samples` samples if given).
    Default attacks: fgsm, pgd and noise at eps (0, 0.05, 0.1, 0.2) on continuous inputs; substitute at
    (0, 0.1, 0.25, 0.5) on token ids. Of a dict of model inputs, the attacked one is ``pixel_values``,
    ``input_values``, ``input_ids``, ... (`workbench.analysis.states.PRIMARY`), the others kept.

    eps is in the inputs' units: the L-inf radius for fgsm/pgd, the noise's standard deviation for noise, the
    share of tokens replaced for substitute. `x_range` clamps perturbed inputs (default: measured on the data).
    PGD takes `steps` steps of `step_size` (default 2.5 * eps / steps).
    """
    t0 = time.perf_counter()
    data = bench.data if data is None else data
    if attacks is None or eps is None:  # defaults by the kind of input: continuous, or token ids
        first = next(iter(batches(data, bench.model, adapter=bench.adapter)), None) if data is not None else None
        tokens = first is not None and not primary(first[0])[1].is_floating_point()
        if attacks is None:
            attacks = ("substitute",) if tokens else ("fgsm", "pgd", "noise")
        if eps is None:
            eps = (0.0, 0.1, 0.25, 0.5) if tokens else (0.0, 0.05, 0.1, 0.2)
    names = (attacks,) if isinstance(attacks, str) else tuple(attacks)
    if not names:
        raise AttackError(f"name at least one attack; available: {available_attacks()}")
    chosen = [_get(a) for a in names]
    eps_arr = _check_eps(eps)
    b, a = default_pair(bench, before, after)
    if data is None:
        raise DataError("robustness needs data: pass data= or create the Workbench with data")
    model = bench.model
    n_data = _count(data)
    if samples is not None:
        if isinstance(samples, bool) or int(samples) != samples or samples < 1:
            raise DataError(f"samples must be a positive integer, got {samples!r}")
        if n_data is not None and samples > n_data:
            warnings.warn(
                f"samples={samples} but the data holds only {n_data}; using all {n_data}", WorkbenchWarning, 2
            )
            samples = n_data
    s = _settings(model, data, x_range, steps, step_size, seed)
    units_per_state = _n_batches(data, samples) * len(chosen) * int((eps_arr > 0).sum())
    total, done = 2 * units_per_state, [0]
    bar = _bar(progress, total, "robustness")  # True: a tqdm bar; a callback; False/None: nothing

    def tick() -> None:
        done[0] += 1
        bar(1, close=done[0] == total)

    if callable(progress):
        progress(0, total)
    acc = np.zeros((2, len(chosen), len(eps_arr)))
    flip = np.zeros_like(acc)
    clean = np.zeros(2)
    n = 0
    for k, state in enumerate((b, a)):
        with at(bench, state):
            acc[k], flip[k], clean[k], n = _accuracy_under(
                model, data, chosen, eps_arr, s, samples, tick, bench.adapter
            )
    return RobustnessResult(
        attacks=names,
        eps=eps_arr,
        before=b,
        after=a,
        before_label=label_of(bench, b),
        after_label=label_of(bench, a),
        accuracy=acc,
        flip_rate=flip,
        clean_accuracy=clean,
        n=n,
        x_range=(s.lo, s.hi),
        seed=seed,
        steps=steps,
        seconds=time.perf_counter() - t0,
    )


def _count(data: Iterable) -> int | None:
    ds = getattr(data, "dataset", None)
    if ds is not None:
        try:
            return len(ds)
        except TypeError:
            return None
    if isinstance(data, (list, tuple)):
        return sum(len(_split(batch)[1]) for batch in data)
    return None


def _n_batches(data: Iterable, samples: int | None) -> int:
    try:
        nb = len(data)  # type: ignore[arg-type]
    except TypeError:
        return 1
    if samples is not None:
        bs = getattr(data, "batch_size", None)
        if bs:
            nb = min(nb, -(-samples // bs))
    return max(1, nb)


def robust_accuracy(
    attack: str = "fgsm",
    eps: float = 0.1,
    *,
    x_range: tuple[float, float] | None = None,
    samples: int | None = None,
    steps: int = 10,
    seed: int = 0,
) -> Callable[[nn.Module, Iterable], float]:
    """A metric ``(model, data) -> float``: accuracy under `attack` at `eps`. Use it for robustness-aware
    sensitivity, ``bench.sensitivity(metric=robust_accuracy("fgsm", 0.1))``, or as a Workbench metric.

    >>> m = robust_accuracy("fgsm", 0.05)
    >>> m.__name__
    'robust_accuracy(fgsm, eps=0.05)'
    """
    chosen = [_get(attack)]
    eps_arr = _check_eps([eps])
    ranges: dict[int, tuple[float, float]] = {}  # measured once per data set

    def metric(model: nn.Module, data: Iterable) -> float:
        if x_range is None and id(data) not in ranges:
            ranges[id(data)] = data_range(data, model_device(model))
        s = _settings(model, data, x_range or ranges[id(data)], steps, None, seed)
        acc, _, _, _ = _accuracy_under(model, data, chosen, eps_arr, s, samples)
        return float(acc[0, 0])

    metric.__name__ = f"robust_accuracy({attack}, eps={eps:g})"
    return metric
