"""The attribution methods `attributions` draws from: `register_attribution` adds one, `available_attributions`
lists them.

`integrated_gradients`, `saliency`, `input_x_gradient`, `gradient_shap` and `occlusion` are run by
`captum.attr`. A method takes ``(forward, x, target, baseline, seed, **options)`` and returns attributions shaped
like `x`; it draws random numbers only from `seed`, so results are reproducible.

>>> {"integrated_gradients", "saliency", "occlusion"} <= set(available_attributions())
True
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from ..errors import WorkbenchError, suggest

__all__ = ["AttributionFn", "available_attributions", "register_attribution"]

# fn(forward, x, target, baseline, seed, **options) -> attributions shaped like x
AttributionFn = Callable[..., Tensor]
_METHODS: dict[str, AttributionFn] = {}


def register_attribution(name: str, fn: AttributionFn | None = None, *, overwrite: bool = False):
    """Register `fn(forward, x, target, baseline, seed, **options) -> Tensor` (shaped like `x`) under `name`;
    usable as a decorator. `forward` maps inputs to logits, `target` holds one class per sample and `baseline`
    is the "absent" input (the low end of the data range; zeros for embeddings)."""

    def deco(f: AttributionFn) -> AttributionFn:
        if name in _METHODS and not overwrite:
            raise ValueError(f"attribution method {name!r} is already registered; pass overwrite=True to replace it")
        _METHODS[name] = f
        return f

    return deco(fn) if fn is not None else deco


def available_attributions() -> list[str]:
    """Names of the registered attribution methods."""
    return list(_METHODS)


def _get(name: str) -> AttributionFn:
    if name not in _METHODS:
        raise WorkbenchError(f"unknown attribution method {name!r}.{suggest(str(name), _METHODS, 'method')}")
    return _METHODS[name]


@register_attribution("integrated_gradients")
def _integrated_gradients(forward, x, target, baseline, seed, n_steps: int = 32, **kw) -> Tensor:
    from captum.attr import IntegratedGradients

    return IntegratedGradients(forward).attribute(
        x, baselines=baseline, target=target, n_steps=n_steps, internal_batch_size=max(1, 1024 // n_steps), **kw
    )


@register_attribution("saliency")
def _saliency(forward, x, target, baseline, seed, **kw) -> Tensor:
    from captum.attr import Saliency

    return Saliency(forward).attribute(x, target=target, **{"abs": True, **kw})


@register_attribution("input_x_gradient")
def _input_x_gradient(forward, x, target, baseline, seed, **kw) -> Tensor:
    from captum.attr import InputXGradient

    return InputXGradient(forward).attribute(x, target=target, **kw)


@register_attribution("gradient_shap")
def _gradient_shap(forward, x, target, baseline, seed, n_samples: int = 16, stdevs: float = 0.05, **kw) -> Tensor:
    from captum.attr import GradientShap

    gen = torch.Generator(device=x.device).manual_seed(seed)
    lo, hi = float(baseline.detach().min()), float(x.detach().max())
    refs = torch.rand((4, *x.shape[1:]), generator=gen, device=x.device, dtype=x.dtype) * (hi - lo) + lo
    refs = torch.cat([baseline.expand(1, *x.shape[1:]), refs])
    state = np.random.get_state()  # captum draws its interpolation coefficients from numpy's global generator
    try:
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            torch.manual_seed(seed)  # and its noise and baselines from torch's
            np.random.seed(seed % 2**32)
            return GradientShap(forward).attribute(
                x, baselines=refs, n_samples=n_samples, stdevs=stdevs, target=target, **kw
            )
    finally:
        np.random.set_state(state)


@register_attribution("occlusion")
def _occlusion(forward, x, target, baseline, seed, window: tuple[int, ...] | None = None, **kw) -> Tensor:
    from captum.attr import Occlusion

    shape = tuple(x.shape[1:])
    if window is None:
        if len(shape) == 3:  # (C, H, W): patches of a quarter of the side, all channels
            window = (shape[0], max(1, shape[1] // 4), max(1, shape[2] // 4))
        elif len(shape) == 2:  # (steps, features): one step at a time
            window = (1, shape[1])
        else:
            window = tuple(1 for _ in shape)
    strides = tuple(max(1, w // 2) if i or len(shape) != 3 else w for i, w in enumerate(window))
    return Occlusion(forward).attribute(
        x,
        sliding_window_shapes=tuple(window),
        strides=strides,
        baselines=baseline,
        target=target,
        perturbations_per_eval=16,
        **kw,
    )
