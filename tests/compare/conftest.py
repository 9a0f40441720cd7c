"""Shared by the tests of workbench/compare/: the default strategies and a small demo model with its loaders."""

import warnings

import pytest
import torch

import workbench as wb

DEFAULT = ("magnitude", "random", "sensitivity", "entropy", "filter-l1")


def _small(name="digits-cnn", n_val=180, n_train=256):
    """A demo model with a 180-sample evaluation loader and a 256-sample training loader."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, data = wb.demo.load(name)
    xv, yv = data.val.dataset.tensors
    val = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xv[:n_val], yv[:n_val]), batch_size=90)
    xt, yt = data.train.dataset.tensors
    g = torch.Generator().manual_seed(0)
    train = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(xt[:n_train], yt[:n_train]), batch_size=64, shuffle=True, generator=g
    )
    return model, data, val, train


@pytest.fixture
def small():
    """``small(name="digits-cnn", n_val=180, n_train=256)`` -> (model, data, val loader, train loader)."""
    return _small
