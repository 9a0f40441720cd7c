"""Tests for ``workbench.demo`` itself (workbench/demo/__init__.py): the names it lists, an unknown name answered
with the closest, the contract of the loaded models (seed 0 loads the shipped weights), and what a load leaves alone.
The data, the shipped weights, the training cache and the architectures have their own test files beside this one.
"""

from __future__ import annotations

import pytest
import torch

from workbench import demo

from .conftest import MIN_ACC, NAMES, _assert_same_state, _states_differ

# --------------------------------------------------------------------------- registry and names


def test_available_lists_the_five_models():
    assert demo.available() == NAMES
    assert demo.available() is not demo.available()  # a copy: callers cannot mutate the registry


def test_unknown_name_suggests_closest():
    with pytest.raises(ValueError) as info:
        demo.load("digits-cnm", pretrained=False)
    msg = str(info.value)
    assert "'digits-cnn'" in msg.split("Available")[0]
    assert all(name in msg for name in NAMES)
    with pytest.raises(ValueError, match="Available"):
        demo.load("resnet50", pretrained=False)


# --------------------------------------------------------------------------- pretrained models


@pytest.mark.parametrize("name", NAMES)
def test_pretrained_accuracy_and_contract(name, trained):
    model, data = trained(name)
    acc = demo.evaluate(model, data.val)
    assert acc >= MIN_ACC[name], f"{name}: val accuracy {acc:.4f} < {MIN_ACC[name]}"

    assert not model.training and not any(m.training for m in model.modules())
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks
    for t in model.state_dict().values():
        assert t.device.type == "cpu"
    assert all(p.dtype == torch.float32 for p in model.parameters())

    with torch.no_grad():
        out = model(data.example)
    assert out.shape == (8, 10) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert model(torch.zeros(1, 1, 8, 8)).shape == (1, 10)


@pytest.mark.parametrize("name", NAMES)
def test_untrained_is_reproducible_per_seed(name, tmp_path, no_training):
    a, _ = demo.load(name, pretrained=False, seed=0, cache_dir=tmp_path)
    b, _ = demo.load(name, pretrained=False, seed=0, cache_dir=tmp_path)
    c, _ = demo.load(name, pretrained=False, seed=1, cache_dir=tmp_path)
    _assert_same_state(a, b)
    assert _states_differ(a, c)
    assert not a.training
    assert not any(tmp_path.iterdir())  # pretrained=False never touches the cache


def test_pretrained_differs_from_untrained(trained):
    model, _ = trained("digits-cnn")
    fresh, data = demo.load("digits-cnn", pretrained=False)
    assert _states_differ(model, fresh)
    assert demo.evaluate(fresh, data.val) < 0.5  # shipped: 0.997 trained; untrained (seed 0) is near chance


# --------------------------------------------------------------------------- side effects


def test_load_leaves_global_state_alone():
    threads = torch.get_num_threads()
    torch.manual_seed(1234)
    rng = torch.random.get_rng_state()
    demo.load("digits-lstm", pretrained=True)
    demo.load("digits-resnet", pretrained=False, seed=5)
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert torch.get_num_threads() == threads


def test_float32_even_with_float64_default():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        model, data = demo.load("digits-transformer", pretrained=False)
    finally:
        torch.set_default_dtype(old)
    assert all(t.dtype == torch.float32 for t in model.state_dict().values() if t.is_floating_point())
    assert model(data.example).dtype == torch.float32


def test_load_under_inference_mode_gives_trainable_model():
    with torch.inference_mode():
        model, data = demo.load("digits-mlp")
    assert not any(p.is_inference() for p in model.parameters())
    model(data.example).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
