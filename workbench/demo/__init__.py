"""Small demo models trained on scikit-learn's offline ``load_digits`` data set.

Every model takes ``(B, 1, 8, 8)`` images in ``[0, 1]`` and returns ``(B, 10)`` logits. The trained weights of
seed 0 ship inside the package (``workbench/demo/weights/``, checked against their manifest's sha256 on every
load): :func:`load` never trains them and writes nothing. Other seeds are trained deterministically on first use
(seconds on a CPU) and cached as safetensors. :func:`train` trains a model from scratch and returns it, touching no
file; ``python -m workbench.demo.ship`` regenerates the shipped weights with it.

One language model ships too: ``load("stdlib-lm")`` gives a small LLaMA-style ``transformers.LlamaForCausalLM``
trained on the Python standard library's source, with its tokenizer and validation data
(:mod:`workbench.demo.lm`; needs ``transformers``). :func:`language_models` lists it; :func:`available` stays the
digits models.

Example:
    >>> from workbench import demo
    >>> demo.language_models()
    ['stdlib-lm']
    >>> demo.available()
    ['digits-mlp', 'digits-cnn', 'digits-resnet', 'digits-lstm', 'digits-transformer']
    >>> model, data = demo.load("digits-cnn")  # the shipped weights: instant, no training
    >>> model(data.example).shape
    torch.Size([8, 10])
    >>> demo.evaluate(model, data.val) > 0.95
    True
    >>> retrained = demo.train("digits-cnn", seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

import difflib
import os

import torch
from torch import nn

from ..errors import DemoWeightsError
from . import lm
from .data import DemoData, make_data
from .lm import LMData
from .models import MODEL_VERSION, available, build
from .shipped import SHIPPED_SEED, load_shipped
from .trainer import cache_path, evaluate, load_weights, save_weights, train_model

__all__ = [
    "SHIPPED_SEED",
    "DemoData",
    "DemoWeightsError",
    "LMData",
    "available",
    "evaluate",
    "language_models",
    "load",
    "train",
]


def language_models() -> list[str]:
    """Names of the demo language models (Hugging Face causal LMs, see :mod:`workbench.demo.lm`)."""
    return [lm.NAME]


def _check_name(name: str) -> str:
    names = available() + language_models()
    if name in names:
        return name
    close = difflib.get_close_matches(str(name), names, n=1, cutoff=0.4)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"unknown demo model {name!r}.{hint} Available: {', '.join(names)}")


def _fresh(name: str, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = lm.build_lm() if name == lm.NAME else build(name)
    return model.to(device="cpu", dtype=torch.float32)


def train(name: str, seed: int = 0) -> nn.Module:
    """Train the demo model ``name`` from its ``seed`` initialisation and return it (float32, CPU, ``eval()``).

    The digits models train in seconds; ``"stdlib-lm"`` in about 11 minutes on this machine's standard library
    (:func:`~workbench.demo.lm.train_lm`).

    Deterministic for a given seed, CPU and torch version (one intra-op thread, see
    :func:`~workbench.demo.trainer.train_model`); another CPU or torch may give other weights, which is why
    :func:`load` uses the shipped ones for seed 0. Nothing is read from or written to any cache; the caller's
    global RNG state and thread count are left as they were.

    Example:
        >>> model = train("digits-mlp", seed=0)  # doctest: +SKIP
        >>> evaluate(model, load("digits-mlp")[1].val) > 0.95  # doctest: +SKIP
        True
    """
    name = _check_name(name)
    seed = int(seed)
    with torch.random.fork_rng(devices=[]), torch.inference_mode(False), torch.enable_grad():
        return train_model(_fresh(name, seed), name, seed)


def load(
    name: str,
    pretrained: bool = True,
    seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
) -> tuple[nn.Module, DemoData | LMData]:
    """Return ``(model, data)`` for the demo model ``name``.

    Args:
        name: One of :func:`available` (``data`` is a :class:`DemoData`) or :func:`language_models` (a
            ``transformers.LlamaForCausalLM`` and an :class:`~workbench.demo.lm.LMData`: Hugging Face dict batches
            ``train`` / ``val`` / ``calib``, the ``tokenizer``, an ``example`` of token ids).
        pretrained: If true, return trained weights: for seed 0 the ones shipped with the package (sha256-checked,
            never trained, nothing written); for other seeds the cached ones, training (:func:`train`) and caching
            them first if needed. Otherwise return the freshly initialised model for ``seed``.
        seed: Seeds the initialisation, the training and the training-loader order (not the split).
        cache_dir: Where weights of seeds other than 0 are cached; defaults to ``$WORKBENCH_CACHE/demo`` or the
            user cache directory (``platformdirs.user_cache_dir("workbench")/demo``).

    Returns:
        The model (float32, CPU, ``eval()`` mode) and its :class:`DemoData` (:class:`LMData` for a language model).

    Raises:
        ValueError: If ``name`` is not a known demo model (the message suggests the closest name).
        ModuleNotFoundError: For ``"stdlib-lm"`` without ``transformers`` (the message says what to install).
        DemoWeightsError: If a shipped weights file is missing or does not match its manifest.

    The caller's global RNG state is left untouched.

    Example:
        >>> model, data = load("digits-mlp", pretrained=False)
        >>> model(data.example).shape
        torch.Size([8, 10])
    """
    name = _check_name(name)
    seed = int(seed)
    is_lm = name == lm.NAME
    with torch.random.fork_rng(devices=[]), torch.inference_mode(False), torch.enable_grad():
        model = _fresh(name, seed)
        if pretrained and seed == SHIPPED_SEED:
            if is_lm:
                load_shipped(model, name, version=lm.LM_VERSION, version_name="LM_VERSION")
            else:
                load_shipped(model, name)
        elif pretrained:
            version = lm.LM_VERSION if is_lm else MODEL_VERSION
            path = cache_path(name, seed, cache_dir, version)
            if not load_weights(model, path):
                model = train(name, seed)  # fresh: a failed load may be partial
                meta = {"name": name, "seed": str(seed), "version": str(version)}
                save_weights(model, path, metadata=meta)
        data = lm.make_lm_data(seed) if is_lm else make_data(name, seed=seed)
    return model.eval(), data
