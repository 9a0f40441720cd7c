"""Shared by the tests of workbench/demo/: the digits model names and accuracy floors, the shipped models loaded
once, a guard that fails a load that trains, and a stand-in for training in the cache tests."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from workbench import demo
from workbench.demo import shipped

NAMES = ["digits-mlp", "digits-cnn", "digits-resnet", "digits-lstm", "digits-transformer"]
# Floors for a model trained with the demo recipe (seed 0), on any CPU. Shipped weights: mlp 0.981, cnn 0.997,
# resnet 0.992, lstm 0.981, transformer 0.964 (workbench/demo/weights/manifest.json).
MIN_ACC = {
    "digits-mlp": 0.95,
    "digits-cnn": 0.95,
    "digits-resnet": 0.95,
    "digits-lstm": 0.90,
    "digits-transformer": 0.90,
}


@pytest.fixture(scope="package")
def trained():
    """The shipped (seed 0) models, loaded once per package: ``trained(name) -> (model, data)``."""
    results: dict[str, tuple[nn.Module, demo.DemoData]] = {}

    def get(name: str) -> tuple[nn.Module, demo.DemoData]:
        if name not in results:
            results[name] = demo.load(name, pretrained=True, seed=0)
        return results[name]

    return get


@pytest.fixture
def no_training(monkeypatch):
    monkeypatch.setattr(demo, "train_model", _no_training)


def _no_training(*args, **kwargs):
    raise AssertionError("load() trained although the weights are shipped or cached")


class _StandInTraining:
    """Replaces ``train_model`` in the cache tests: it puts the shipped seed-0 weights into the model (a trained
    model, without the seconds of training) and records each call, so the tests see what the cache does with it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def __call__(self, model: nn.Module, name: str, seed: int) -> nn.Module:
        self.calls.append((name, seed))
        return shipped.load_shipped(model, name).eval()


def _assert_same_state(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k].dtype == sb[k].dtype, k
        assert torch.equal(sa[k], sb[k]), k


def _states_differ(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return any(sa[k].is_floating_point() and not torch.equal(sa[k], sb[k]) for k in sa)
