"""Linear-like layers the rules read: nn.Linear and Hugging Face's transposed Conv1D."""

from __future__ import annotations

from torch import Tensor, nn


def is_conv1d(module: nn.Module) -> bool:
    """Hugging Face's ``Conv1D`` (GPT-2 and relatives): a linear layer whose weight is stored ``in x out``."""
    w = getattr(module, "weight", None)
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf") and isinstance(w, Tensor) and w.dim() == 2


def _linear(module: nn.Module | None) -> bool:
    return isinstance(module, nn.Linear) or (module is not None and is_conv1d(module))


def linear_dims(module: nn.Module) -> tuple[int, int, int, int]:
    """``(out_dim, in_dim, out_features, in_features)`` of a Linear (``out x in`` weight) or a Conv1D (``in x out``)."""
    w = module.weight
    if is_conv1d(module):
        return 1, 0, int(w.shape[1]), int(w.shape[0])
    return 0, 1, int(w.shape[0]), int(w.shape[1])


def _child(root: nn.Module, name: str) -> nn.Module | None:
    try:
        return root.get_submodule(name)
    except AttributeError:
        return None


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name
