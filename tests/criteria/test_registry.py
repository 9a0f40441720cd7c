"""criteria/_registry.py: every registered criterion scores every element; registering names its summary from the
docstring and refuses a second registration unless told; an unknown name lists the available ones; the context's
generator depends on the seed and the parameter only."""

import pytest
import torch
from conftest import assert_bitwise, snapshot
from torch import nn

from workbench.criteria import ScoreContext, get_criterion, register_criterion
from workbench.criteria._registry import _REGISTRY, available
from workbench.errors import CriterionError

WEIGHT_ONLY = ("magnitude", "l1", "l2", "random")


def test_available_is_sorted_and_holds_the_builtin_criteria():
    names = available()
    assert names == sorted(names) and set(WEIGHT_ONLY) <= set(names)
    for name in names:
        c = get_criterion(name)
        assert c.name == name and c.summary and c.summary == c.summary.strip(), name


@pytest.mark.parametrize("name", WEIGHT_ONLY)
def test_weight_criteria_score_every_element_and_leave_the_model_alone(name):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Flatten(), nn.Linear(12, 2))
    snap = snapshot(model)
    for pname, p in model.named_parameters():
        s = get_criterion(name).score(p, ScoreContext(pname, pname.rsplit(".", 1)[0], model=model))
        assert s.shape == p.shape and s.is_floating_point() and torch.isfinite(s).all(), (name, pname)
    assert_bitwise(model, snap)


def test_registering_names_the_summary_and_refuses_a_second_registration():
    try:

        @register_criterion("test-neg", reference="a test")
        def neg(weight, ctx):
            """Negative magnitude: the largest go first.

            More text that is not the summary."""
            return -weight.abs()

        c = get_criterion("test-neg")
        assert (c.summary, c.reference, c.fn) == ("Negative magnitude: the largest go first.", "a test", neg)
        assert "test-neg" in available()
        with pytest.raises(ValueError, match=r"'test-neg' is already registered; pass overwrite=True"):
            register_criterion("test-neg")(neg)
        register_criterion("test-neg", overwrite=True)(lambda w, ctx: w)
        assert get_criterion("test-neg").summary == ""  # no docstring: no summary
    finally:
        _REGISTRY.pop("test-neg", None)
    assert "test-neg" not in available()


def test_a_criterion_scoring_the_wrong_shape_and_an_unknown_name_are_errors():
    try:
        register_criterion("test-rows")(lambda w, ctx: w.sum(1))
        with pytest.raises(
            CriterionError, match=r"'test-rows' returned scores of shape \(3,\) for 'fc\.weight' of shape \(3, 4\)"
        ):
            get_criterion("test-rows").score(torch.ones(3, 4), ScoreContext("fc.weight", "fc"))
    finally:
        _REGISTRY.pop("test-rows", None)
    with pytest.raises(
        CriterionError, match=r"unknown criterion 'magnitud'; available: .*magnitude.*register_criterion"
    ):
        get_criterion("magnitud")
    with pytest.raises(CriterionError, match="unknown criterion"):
        get_criterion(["not", "hashable"])


def test_the_generator_depends_on_the_seed_and_the_parameter_only():
    def draw(seed, param):
        return torch.rand(5, generator=ScoreContext(param, "t", seed=seed).generator())

    a = draw(0, "fc.weight")
    draw(0, "other.weight")  # scoring another tensor first changes nothing
    assert torch.equal(draw(0, "fc.weight"), a)
    assert not torch.equal(draw(1, "fc.weight"), a) and not torch.equal(draw(0, "fc.bias"), a)


def test_the_adapter_is_shared_through_the_cache_and_follows_the_model():
    m1, m2 = nn.Linear(2, 2), nn.Linear(2, 2)
    cache = {}
    ad = ScoreContext("weight", "", model=m1, cache=cache).adapter
    assert ad.model is m1 and cache["adapter"] is ad
    assert ScoreContext("bias", "", model=m1, cache=cache).adapter is ad
    assert ScoreContext("weight", "", model=m2, cache=cache).adapter.model is m2
