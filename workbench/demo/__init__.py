"""Small demo models trained on scikit-learn's offline ``load_digits`` data set.

Every model takes ``(B, 1, 8, 8)`` images in ``[0, 1]`` and returns ``(B, 10)`` logits. Pretrained
weights are trained deterministically on first use (a few seconds on a CPU) and cached as safetensors.

Example:
    >>> from workbench import demo
    >>> demo.available()
    ['digits-mlp', 'digits-cnn', 'digits-resnet', 'digits-lstm', 'digits-transformer']
    >>> model, data = demo.load("digits-cnn")  # doctest: +SKIP
    >>> model(data.example).shape  # doctest: +SKIP
    torch.Size([8, 10])
"""

from __future__ import annotations

import difflib
import os

import torch
from torch import nn

from .data import DemoData, make_data
from .models import MODEL_VERSION, available, build
from .train import cache_path, evaluate, load_weights, save_weights, train_model

__all__ = ["DemoData", "available", "evaluate", "load"]


def _check_name(name: str) -> str:
    names = available()
    if name in names:
        return name
    close = difflib.get_close_matches(str(name), names, n=1, cutoff=0.4)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"unknown demo model {name!r}.{hint} Available: {', '.join(names)}")


def _fresh(name: str, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return build(name).to(device="cpu", dtype=torch.float32)


def load(
    name: str,
    pretrained: bool = True,
    seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
) -> tuple[nn.Module, DemoData]:
    """Return ``(model, data)`` for the demo model ``name``.

    Args:
        name: One of :func:`available`.
        pretrained: If true, load cached trained weights, training (and caching) them first if needed;
            otherwise return the freshly initialised model for ``seed``.
        seed: Seeds the initialisation, the training and the training-loader order (not the split).
        cache_dir: Where the weights are cached; defaults to ``$WORKBENCH_CACHE/demo`` or the user
            cache directory (``platformdirs.user_cache_dir("workbench")/demo``).

    Returns:
        The model (float32, CPU, ``eval()`` mode) and its :class:`DemoData`.

    Raises:
        ValueError: If ``name`` is not a known demo model (the message suggests the closest name).

    The caller's global RNG state is left untouched.

    Example:
        >>> model, data = load("digits-mlp", pretrained=False)
        >>> model(data.example).shape
        torch.Size([8, 10])
    """
    name = _check_name(name)
    seed = int(seed)
    with torch.random.fork_rng(devices=[]), torch.inference_mode(False), torch.enable_grad():
        model = _fresh(name, seed)
        if pretrained:
            path = cache_path(name, seed, cache_dir)
            if not load_weights(model, path):
                model = train_model(_fresh(name, seed), name, seed)  # fresh: a failed load may be partial
                meta = {"name": name, "seed": str(seed), "version": str(MODEL_VERSION)}
                save_weights(model, path, metadata=meta)
        data = make_data(name, seed=seed)
    return model.eval(), data
