"""demo/data.py: the offline digits data: shapes, ranges and a stratified split independent of the seed, a fixed
calibration set, a train order reproducible per seed, and data that callers cannot corrupt."""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest
import torch

from workbench import demo


def test_data_shapes_ranges_and_split():
    _, data = demo.load("digits-mlp", pretrained=False)
    assert isinstance(data, demo.DemoData)
    assert data.name == "digits-mlp"
    assert data.classes == tuple(str(i) for i in range(10))
    assert data.input_shape == (1, 8, 8)
    assert data.x_range == (0.0, 1.0)
    assert data.example.shape == (8, 1, 8, 8) and data.example.dtype == torch.float32

    n_train, n_val = len(data.train.dataset), len(data.val.dataset)
    assert (n_train, n_val) == (1437, 360)
    assert data.train.batch_size == 64 and data.val.batch_size == 128 and data.calib.batch_size == 64
    assert data.train.num_workers == data.val.num_workers == data.calib.num_workers == 0

    for loader in (data.train, data.val, data.calib):
        for x, y in loader:
            assert x.dtype == torch.float32 and x.shape[1:] == (1, 8, 8)
            assert y.dtype == torch.int64 and y.shape == (x.shape[0],)
            assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
            assert int(y.min()) >= 0 and int(y.max()) <= 9
    assert float(next(iter(data.val))[0].max()) == 1.0  # scaled by 1/16, not e.g. standardised

    val_x, _ = next(iter(data.val))
    assert torch.equal(data.example, val_x[:8])
    # Stratified: every class has ~20 % of its samples in the validation split.
    counts = Counter(torch.cat([y for _, y in data.val]).tolist())
    assert set(counts) == set(range(10)) and all(34 <= c <= 38 for c in counts.values())

    with pytest.raises(dataclasses.FrozenInstanceError):
        data.name = "x"  # type: ignore[misc]


def test_split_is_independent_of_seed():
    _, d0 = demo.load("digits-cnn", pretrained=False, seed=0)
    _, d1 = demo.load("digits-lstm", pretrained=False, seed=7)
    for a, b in zip(d0.val, d1.val, strict=True):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert torch.equal(d0.train.dataset.tensors[0], d1.train.dataset.tensors[0])


def test_calib_is_fixed_256_samples():
    _, d0 = demo.load("digits-mlp", pretrained=False, seed=0)
    _, d1 = demo.load("digits-resnet", pretrained=False, seed=3)
    assert len(d0.calib.dataset) == 256 and len(d0.calib) == 4
    b0, b1 = list(d0.calib), list(d1.calib)
    again = list(d0.calib)
    for (x0, y0), (x1, y1), (x2, y2) in zip(b0, b1, again, strict=True):
        assert torch.equal(x0, x1) and torch.equal(y0, y1)
        assert torch.equal(x0, x2) and torch.equal(y0, y2)
    assert len(set(torch.cat([y for _, y in b0]).tolist())) == 10  # all classes represented


def test_train_order_reproducible_per_seed():
    def first_epoch(seed: int) -> torch.Tensor:
        _, data = demo.load("digits-mlp", pretrained=False, seed=seed)
        return torch.cat([y for _, y in data.train])

    a, b, c = first_epoch(0), first_epoch(0), first_epoch(1)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.numel() == 1437


def test_data_cannot_be_corrupted_by_callers():
    _, d0 = demo.load("digits-mlp", pretrained=False)
    d0.val.dataset.tensors[0].zero_()
    d0.example.zero_()
    _, d1 = demo.load("digits-mlp", pretrained=False)
    assert float(d1.val.dataset.tensors[0].max()) == 1.0 and float(d1.example.max()) > 0
