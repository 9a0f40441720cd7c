"""analysis/attribution_methods.py: on a linear model each method gives its closed form (saliency |w_t|,
input x gradient and integrated gradients x * w_t from a zero baseline, occlusion of single features the same), every
method returns attributions shaped like the input, reproducible from its seed and leaving the global RNG alone;
registering refuses a taken name and an unknown one is answered with the closest."""

import numpy as np
import pytest
import torch
from torch import nn

from workbench.analysis.attribution_methods import _METHODS, _get, available_attributions, register_attribution
from workbench.errors import WorkbenchError

pytest.importorskip("captum")


def _linear():
    torch.manual_seed(0)
    lin = nn.Linear(5, 3, bias=True)
    x = torch.randn(4, 5)
    target = torch.tensor([0, 2, 1, 2])
    return lin, x, target, lin.weight.detach()[target]  # w_t: the target row's weights, per sample


@pytest.mark.parametrize(
    ("name", "want", "options"),
    [
        ("saliency", lambda x, w: w.abs(), {}),
        ("input_x_gradient", lambda x, w: x * w, {}),
        ("integrated_gradients", lambda x, w: x * w, {"n_steps": 8}),
        ("occlusion", lambda x, w: x * w, {"window": (1,)}),
    ],
)
def test_each_method_gives_its_closed_form_on_a_linear_model(name, want, options):
    lin, x, target, w = _linear()
    got = _get(name)(lin, x, target, torch.zeros(1, 5), 0, **options)
    torch.testing.assert_close(got, want(x, w), rtol=1e-4, atol=1e-5)


METHODS = ["integrated_gradients", "saliency", "input_x_gradient", "occlusion"]


def _image_and_sequence_calls(shape):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(int(torch.tensor(shape[1:]).prod()), 3), nn.Tanh())
    x = torch.rand(shape)
    return model, x, torch.tensor([0, 2]), torch.zeros(1, *shape[1:])


SHAPES = pytest.mark.parametrize("shape", [(2, 1, 8, 8), (2, 6, 4)], ids=["image", "sequence"])


@pytest.mark.parametrize("name", [*METHODS, "gradient_shap"])
@SHAPES
def test_every_method_is_shaped_like_the_input(name, shape):
    model, x, target, baseline = _image_and_sequence_calls(shape)
    a = _get(name)(model, x, target, baseline, 7)
    assert a.shape == x.shape and torch.isfinite(a).all()


@pytest.mark.parametrize("name", [*METHODS, "gradient_shap"])
@SHAPES
def test_every_method_is_reproducible_from_its_seed_and_leaves_the_global_rngs_alone(name, shape):
    model, x, target, baseline = _image_and_sequence_calls(shape)
    torch_state, numpy_state = torch.random.get_rng_state(), np.random.get_state()
    a = _get(name)(model, x, target, baseline, 7)
    b = _get(name)(model, x, target, baseline, 7)
    assert torch.equal(a, b)
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    after = np.random.get_state()
    assert np.array_equal(after[1], numpy_state[1]) and after[2] == numpy_state[2]


def test_registering_refuses_a_taken_name_and_unknown_names_get_the_closest():
    assert {"integrated_gradients", "saliency", "occlusion"} <= set(available_attributions())
    try:

        @register_attribution("test-zeros")
        def zeros(forward, x, target, baseline, seed, **kw):
            return torch.zeros_like(x)

        assert _get("test-zeros") is zeros and available_attributions()[-1] == "test-zeros"
        with pytest.raises(ValueError, match=r"'test-zeros' is already registered; pass overwrite=True"):
            register_attribution("test-zeros", zeros)
        register_attribution("test-zeros", torch.ones_like, overwrite=True)
        assert _get("test-zeros") is torch.ones_like
    finally:
        _METHODS.pop("test-zeros", None)
    with pytest.raises(WorkbenchError, match=r"unknown attribution method 'salency'\. Did you mean 'saliency'"):
        _get("salency")
