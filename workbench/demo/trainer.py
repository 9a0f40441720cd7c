"""Deterministic training of the demo models and a safetensors weight cache for the seeds that do not ship.

Seed 0's trained weights ship with the package (:mod:`workbench.demo.shipped`). Weights of other seeds live in
``<cache>/<name>-seed<seed>-v<MODEL_VERSION>.safetensors`` where ``<cache>`` is the ``cache_dir`` argument, else
``$WORKBENCH_CACHE/demo``, else ``platformdirs.user_cache_dir("workbench")/demo``.
Files are written atomically (temp file + :func:`os.replace`); an unreadable file is retrained.

Example:
    >>> from workbench.demo.models import build
    >>> from workbench.demo.data import make_data
    >>> model = build("digits-mlp")
    >>> train_model(model, "digits-mlp", seed=0)  # doctest: +SKIP
    >>> evaluate(model, make_data().val) > 0.95  # doctest: +SKIP
    True
"""

from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from .data import make_data
from .models import MODEL_VERSION

__all__ = ["Recipe", "cache_path", "evaluate", "load_weights", "save_weights", "train_model"]

CACHE_ENV = "WORKBENCH_CACHE"


@dataclass(frozen=True)
class Recipe:
    """Training hyper-parameters: AdamW with a one-cycle learning-rate schedule."""

    epochs: int = 20
    lr: float = 3e-3
    weight_decay: float = 1e-4


_RECIPES: dict[str, Recipe] = {
    "digits-mlp": Recipe(epochs=30, lr=1e-2),
    "digits-cnn": Recipe(epochs=12, lr=5e-3),
    "digits-resnet": Recipe(epochs=10, lr=5e-3),
    "digits-lstm": Recipe(epochs=25, lr=1e-2),
    "digits-transformer": Recipe(epochs=30, lr=3e-3),
}


def recipe_for(name: str) -> Recipe:
    """The training recipe for model ``name`` (a default one for models without an override)."""
    return _RECIPES.get(name, Recipe())


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Directory holding the cached demo weights (see the module docstring for the precedence)."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env) / "demo"
    import platformdirs

    return Path(platformdirs.user_cache_dir("workbench")) / "demo"


def cache_path(
    name: str, seed: int, cache_dir: str | os.PathLike[str] | None = None, version: int = MODEL_VERSION
) -> Path:
    """Path of the cached weights for ``name``/``seed`` under model ``version`` (default the current
    :data:`MODEL_VERSION`)."""
    return cache_root(cache_dir) / f"{name}-seed{seed}-v{version}.safetensors"


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader) -> float:
    """Top-1 accuracy of ``model`` on ``loader`` (the model's train/eval mode is left as is)."""
    correct = total = 0
    for x, y in loader:
        correct += int((model(x).argmax(dim=1) == y).sum())
        total += int(y.numel())
    return correct / max(total, 1)


def train_model(model: nn.Module, name: str, seed: int) -> nn.Module:
    """Train ``model`` in place, deterministically for a given ``seed``; returns it in ``eval()`` mode.

    Training runs on one intra-op thread (restored afterwards): for models this small extra threads
    buy little, oversubscribe badly on a busy machine, and would make the weights depend on the core
    count. The caller is expected to have forked the global RNG; this seeds it again before training.
    ``"stdlib-lm"`` trains with its own recipe (:func:`workbench.demo.lm.train_lm`).
    """
    if name == "stdlib-lm":
        from .lm import train_lm

        return train_lm(model, seed)
    recipe = recipe_for(name)
    data = make_data(name, seed=seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=recipe.lr, epochs=recipe.epochs, steps_per_epoch=len(data.train)
        )
        loss_fn = nn.CrossEntropyLoss()
        model.train()
        for _ in range(recipe.epochs):
            for x, y in data.train:
                opt.zero_grad(set_to_none=True)
                loss_fn(model(x), y).backward()
                opt.step()
                sched.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def save_weights(model: nn.Module, path: Path, metadata: dict[str, str] | None = None) -> bool:
    """Atomically write ``model.state_dict()`` to ``path`` as safetensors; ``False`` if it failed."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        save_file(tensors, tmp, metadata=metadata)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the cache holds nothing secret
        os.replace(tmp, path)
        tmp = None
        return True
    except OSError as exc:
        warnings.warn(f"could not write demo weights cache {path}: {exc}", RuntimeWarning, stacklevel=3)
        return False
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def load_weights(model: nn.Module, path: Path) -> bool:
    """Load cached weights into ``model`` (strict); ``False`` if missing, unreadable or mismatched."""
    if not path.is_file():
        return False
    from safetensors.torch import load_file

    try:
        state = load_file(str(path), device="cpu")
        model.load_state_dict(state, strict=True)
    except Exception as exc:  # corrupt file, wrong keys or shapes: fall back to retraining
        warnings.warn(
            f"ignoring unreadable demo weights cache {path} ({type(exc).__name__}: {exc}); retraining",
            RuntimeWarning,
            stacklevel=3,
        )
        return False
    return True
