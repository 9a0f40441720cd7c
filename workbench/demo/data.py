"""Offline demo data: scikit-learn's ``load_digits`` (8x8 grey-scale digits, 1797 samples).

The split is fixed (stratified, 20 % validation, ``random_state=0``) and independent of the
``seed`` used for the training order, so every model and every analysis sees the same data.

Example:
    >>> data = make_data(seed=0)
    >>> x, y = next(iter(data.val))
    >>> tuple(x.shape[1:]), x.dtype, y.dtype
    ((1, 8, 8), torch.float32, torch.int64)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

__all__ = [
    "CALIB_BATCH",
    "CALIB_SIZE",
    "TRAIN_BATCH",
    "VAL_BATCH",
    "VAL_FRACTION",
    "DemoData",
    "make_data",
]

VAL_FRACTION = 0.2
SPLIT_RANDOM_STATE = 0
TRAIN_BATCH = 64
VAL_BATCH = 128
CALIB_SIZE = 256
CALIB_BATCH = 64
N_EXAMPLE = 8
CLASSES: tuple[str, ...] = tuple(str(i) for i in range(10))


@dataclass(frozen=True)
class DemoData:
    """Loaders and metadata for one demo model.

    Attributes:
        name: Name of the demo model this data belongs to (e.g. ``"digits-cnn"``).
        train: Shuffled training loader (order reproducible for a given seed), batch 64.
        val: Validation loader, batch 128, no shuffle.
        calib: Fixed 256-sample subset of the training split, batch 64, no shuffle.
        classes: Class names ``("0", ..., "9")``.
        example: First 8 validation inputs, shape ``(8, 1, 8, 8)``.
        input_shape: Shape of one input, ``(1, 8, 8)``.
        x_range: Value range of the inputs, ``(0.0, 1.0)``.
    """

    name: str
    train: DataLoader
    val: DataLoader
    calib: DataLoader
    classes: tuple[str, ...]
    example: torch.Tensor
    input_shape: tuple[int, ...]
    x_range: tuple[float, float]


@functools.lru_cache(maxsize=1)
def _arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Load, scale and split the digits once per process: ``(x_train, y_train, x_val, y_val)``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    y = digits.target.astype(np.int64)
    x_tr, x_va, y_tr, y_va = train_test_split(x, y, test_size=VAL_FRACTION, random_state=SPLIT_RANDOM_STATE, stratify=y)
    arrays = (np.ascontiguousarray(x_tr), y_tr, np.ascontiguousarray(x_va), y_va)
    for a in arrays:
        a.setflags(write=False)
    return arrays


def _tensors() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fresh tensors (copies, so callers can never corrupt the cached arrays)."""
    return tuple(torch.tensor(a) for a in _arrays())  # type: ignore[return-value]


def make_data(name: str = "digits", seed: int = 0) -> DemoData:
    """Build the :class:`DemoData` for ``name``; ``seed`` only fixes the training-loader order."""
    x_tr, y_tr, x_va, y_va = _tensors()
    gen = torch.Generator()
    gen.manual_seed(seed)
    train = DataLoader(TensorDataset(x_tr, y_tr), batch_size=TRAIN_BATCH, shuffle=True, generator=gen, num_workers=0)
    val = DataLoader(TensorDataset(x_va, y_va), batch_size=VAL_BATCH, shuffle=False, num_workers=0)
    # A fixed, class-mixed subset: the split is already shuffled, so its head is a fair sample.
    calib = DataLoader(
        TensorDataset(x_tr[:CALIB_SIZE].clone(), y_tr[:CALIB_SIZE].clone()),
        batch_size=CALIB_BATCH,
        shuffle=False,
        num_workers=0,
    )
    return DemoData(
        name=name,
        train=train,
        val=val,
        calib=calib,
        classes=CLASSES,
        example=x_va[:N_EXAMPLE].clone(),
        input_shape=(1, 8, 8),
        x_range=(0.0, 1.0),
    )
