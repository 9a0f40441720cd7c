"""The trained demo weights that ship inside the package (seed 0), and their manifest.

``workbench/demo/weights/`` holds one safetensors file per demo model and ``manifest.json``, which gives for each
model its file, sha256, seed, :data:`~workbench.demo.models.MODEL_VERSION`, the torch version it was trained with
and the validation accuracy it reaches. :func:`load_shipped` checks the file against the manifest before loading,
so the weights every user and every test sees are the same bytes on every machine. ``python -m workbench.demo.ship``
regenerates them (see :mod:`workbench.demo.ship`).

Example:
    >>> import torch
    >>> from workbench.demo.models import build
    >>> entry = manifest()["models"]["digits-mlp"]
    >>> entry["seed"], entry["file"]
    (0, 'digits-mlp-seed0-v1.safetensors')
    >>> model = load_shipped(build("digits-mlp"), "digits-mlp")
    >>> model(torch.zeros(1, 1, 8, 8)).shape
    torch.Size([1, 10])
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import DemoWeightsError
from .models import MODEL_VERSION

__all__ = ["SHIPPED_SEED", "WEIGHTS_DIR", "load_shipped", "manifest", "sha256", "shipped_file", "verified"]

#: The directory of the shipped weights and their manifest.
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MANIFEST_NAME = "manifest.json"
#: The seed whose trained weights ship with the package; other seeds are trained on first use and cached.
SHIPPED_SEED = 0
_REGENERATE = "regenerate them with `python -m workbench.demo.ship` (or reinstall the package)"


def sha256(path: Path) -> str:
    """Hex sha256 of the file at ``path``."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def manifest(weights_dir: Path | None = None) -> dict[str, Any]:
    """The parsed ``manifest.json`` of ``weights_dir`` (default :data:`WEIGHTS_DIR`).

    Raises:
        DemoWeightsError: If the manifest is missing or is not the JSON this module writes.
    """
    path = Path(weights_dir or WEIGHTS_DIR) / MANIFEST_NAME
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DemoWeightsError(f"the demo weights manifest {path} is missing; {_REGENERATE}") from None
    except (OSError, ValueError) as exc:
        raise DemoWeightsError(f"cannot read the demo weights manifest {path} ({exc}); {_REGENERATE}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("models"), dict):
        raise DemoWeightsError(f"the demo weights manifest {path} has no 'models' table; {_REGENERATE}")
    return doc


def shipped_file(
    name: str, weights_dir: Path | None = None, version: int = MODEL_VERSION, version_name: str = "MODEL_VERSION"
) -> tuple[Path, dict[str, Any]]:
    """``(path, manifest entry)`` of the shipped weights of demo model ``name``, made for model ``version`` (the
    digits models' :data:`~workbench.demo.models.MODEL_VERSION` by default).

    Raises:
        DemoWeightsError: If the manifest has no entry for ``name``, or the entry is for another MODEL_VERSION.
    """
    root = Path(weights_dir or WEIGHTS_DIR)
    entry = manifest(root)["models"].get(name)
    if entry is None:
        raise DemoWeightsError(f"{root / MANIFEST_NAME} lists no shipped weights for {name!r}; {_REGENERATE}")
    if entry.get("model_version") != version:
        raise DemoWeightsError(
            f"the shipped weights of {name!r} ({entry.get('file')}) are for {version_name} "
            f"{entry.get('model_version')}, the code is at {version_name} {version}; {_REGENERATE}"
        )
    return root / entry["file"], entry


def verified(path: Path, expected: str, name: str, what: str = "demo weights") -> Path:
    """``path`` after checking that it exists and its sha256 is ``expected`` (from the manifest entry of ``name``).

    Raises:
        DemoWeightsError: If the file is missing or its sha256 differs.
    """
    if not path.is_file():
        raise DemoWeightsError(f"the shipped {what} {path} for {name!r} are missing; {_REGENERATE}")
    digest = sha256(path)
    if digest != expected:
        raise DemoWeightsError(
            f"the shipped {what} {path} have sha256 {digest}, the manifest says {expected}: the file "
            f"was altered or is from another build; {_REGENERATE}"
        )
    return path


def load_shipped(
    model: nn.Module,
    name: str,
    weights_dir: Path | None = None,
    version: int = MODEL_VERSION,
    version_name: str = "MODEL_VERSION",
) -> nn.Module:
    """Load the shipped weights of ``name`` into ``model`` (strict, cast to the model's dtype) after checking their
    sha256; returns ``model``.

    Nothing is trained and nothing is written.

    Raises:
        DemoWeightsError: If the file is missing, its sha256 differs from the manifest's, or it does not fit the model.
    """
    from safetensors.torch import load_file

    path, entry = shipped_file(name, weights_dir, version, version_name)
    verified(path, entry["sha256"], name)
    try:
        model.load_state_dict(load_file(str(path), device="cpu"), strict=True)
    except Exception as exc:
        raise DemoWeightsError(
            f"the shipped demo weights {path} do not fit {name!r} ({type(exc).__name__}: {exc}); {_REGENERATE}"
        ) from None
    return model
