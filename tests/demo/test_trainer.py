"""demo/trainer.py: the recipe still trains (a floor on accuracy), other seeds train once and are read back from the
cache bitwise, a corrupt cache is retrained, and where the cache lives."""

from __future__ import annotations

import os
import warnings

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from workbench import demo
from workbench.demo import trainer as demo_train

from .conftest import MIN_ACC, NAMES, _assert_same_state, _no_training, _StandInTraining, _states_differ


@pytest.mark.slow
@pytest.mark.trains_demo
@pytest.mark.parametrize("name", NAMES)
def test_retraining_reaches_the_accuracy_threshold(name):
    """The recipe still trains: a floor on the retrained model's accuracy, not equality with the shipped weights
    (another CPU or torch gives other weights)."""
    threads = torch.get_num_threads()
    torch.manual_seed(1234)
    rng = torch.random.get_rng_state()
    model = demo.train(name, seed=0)
    assert torch.equal(torch.random.get_rng_state(), rng) and torch.get_num_threads() == threads
    assert not model.training and all(p.dtype == torch.float32 for p in model.parameters())
    _, data = demo.load(name, pretrained=False)
    acc = demo.evaluate(model, data.val)
    assert acc >= MIN_ACC[name], f"{name}: retrained val accuracy {acc:.4f} < {MIN_ACC[name]}"
    assert _states_differ(model, demo.load(name, pretrained=False)[0])


def test_other_seeds_train_once_then_read_the_cache_bitwise(tmp_path, monkeypatch):
    stand_in = _StandInTraining()
    monkeypatch.setattr(demo, "train_model", stand_in)
    threads = torch.get_num_threads()
    model, _ = demo.load("digits-lstm", pretrained=True, seed=1, cache_dir=tmp_path)
    assert stand_in.calls == [("digits-lstm", 1)] and torch.get_num_threads() == threads
    path = demo_train.cache_path("digits-lstm", 1, tmp_path)
    assert path.is_file() and path.suffix == ".safetensors"
    assert "digits-lstm" in path.name and "seed1" in path.name and f"v{demo.MODEL_VERSION}" in path.name
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]  # no leftover temp files
    with safe_open(str(path), "pt") as f:
        assert f.metadata() == {"name": "digits-lstm", "seed": "1", "version": str(demo.MODEL_VERSION)}

    again, _ = demo.load("digits-lstm", pretrained=True, seed=1, cache_dir=tmp_path)
    assert stand_in.calls == [("digits-lstm", 1)]  # read back, not trained again
    _assert_same_state(model, again)
    assert not again.training
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "env"))
    demo.load("digits-lstm", pretrained=True, seed=2)
    assert stand_in.calls[-1] == ("digits-lstm", 2)
    assert demo_train.cache_path("digits-lstm", 2).is_file() and demo_train.cache_root() == tmp_path / "env" / "demo"


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong-model", "empty"])
def test_corrupt_cache_is_retrained(damage, tmp_path, monkeypatch):
    stand_in = _StandInTraining()
    monkeypatch.setattr(demo, "train_model", stand_in)
    good = tmp_path / "good"
    reference, _ = demo.load("digits-mlp", pretrained=True, seed=1, cache_dir=good)
    path = demo_train.cache_path("digits-mlp", 1, tmp_path)
    if damage == "garbage":
        path.write_bytes(b"\x00not a safetensors file" * 10)
    elif damage == "truncated":
        path.write_bytes(demo_train.cache_path("digits-mlp", 1, good).read_bytes()[:1000])
    elif damage == "empty":
        path.write_bytes(b"")
    else:  # a valid safetensors file holding another model's weights
        assert demo_train.save_weights(demo.load("digits-cnn", pretrained=False)[0], path)

    with pytest.warns(RuntimeWarning, match="retraining"):
        model, _ = demo.load("digits-mlp", pretrained=True, seed=1, cache_dir=tmp_path)
    assert stand_in.calls == [("digits-mlp", 1)] * 2
    _assert_same_state(model, reference)
    # ...and the cache file was rewritten (compare contents: the header's metadata order may vary)
    rewritten, original = load_file(str(path)), load_file(str(demo_train.cache_path("digits-mlp", 1, good)))
    assert rewritten.keys() == original.keys() and all(torch.equal(rewritten[k], original[k]) for k in original)
    with safe_open(str(path), "pt") as f:
        assert f.metadata() == {"name": "digits-mlp", "seed": "1", "version": str(demo.MODEL_VERSION)}

    monkeypatch.setattr(demo, "train_model", _no_training)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again, _ = demo.load("digits-mlp", pretrained=True, seed=1, cache_dir=tmp_path)
    _assert_same_state(again, reference)


def test_cache_location(monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "env"))
    assert demo_train.cache_root() == tmp_path / "env" / "demo"
    assert demo_train.cache_root(tmp_path / "explicit") == tmp_path / "explicit"
    monkeypatch.delenv("WORKBENCH_CACHE")
    root = demo_train.cache_root()
    assert root.name == "demo" and "workbench" in str(root)
    a = demo_train.cache_path("digits-mlp", 0, tmp_path)
    assert a != demo_train.cache_path("digits-mlp", 1, tmp_path)
    assert a != demo_train.cache_path("digits-cnn", 0, tmp_path)
