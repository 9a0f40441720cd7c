import json
import warnings

import pytest
from hypothesis import given
from hypothesis import strategies as st

import workbench as wb
from workbench.errors import PlanError


def test_uniform_global_and_explicit_plans_roundtrip_json():
    plans = [
        wb.Plan.uniform(0.5, granularity="filter", criterion="l1"),
        wb.Plan.global_(0.8, criterion="magnitude", exclude=["classifier.*"]),
        wb.Plan({"features.0": wb.LayerPlan(0.3, "filter", "l2"), "fc": 0.2}),
        wb.Plan.uniform(0.4, include="features.*").with_ratio("features.3", 0.1),
    ]
    for p in plans:
        assert wb.Plan.from_json(p.to_json()) == p
        assert wb.Plan.from_dict(json.loads(json.dumps(p.to_dict()))) == p
        assert hash(wb.Plan.from_json(p.to_json())) == hash(p)


def test_with_ratio_returns_new_plan_and_keeps_defaults():
    p = wb.Plan.uniform(0.5, granularity="filter", criterion="l1")
    q = p.with_ratio("features.0", 0.2)
    assert p.layers == {} and q.layers["features.0"] == wb.LayerPlan(0.2, "filter", "l1")
    assert q.default == p.default
    assert q.without("features.0") == p
    with pytest.raises(TypeError):
        q.layers["x"] = wb.LayerPlan(0.1)  # read-only mapping


@pytest.mark.parametrize("bad", [1.0, 1.5, -0.1, float("nan"), float("inf"), "0.5", None, True])
def test_bad_ratios_are_rejected_with_the_layer_named(bad):
    with pytest.raises(PlanError, match="ratio"):
        wb.Plan.uniform(bad)
    with pytest.raises(PlanError, match=r"'features\.3'"):
        wb.Plan.uniform(0.5).with_ratio("features.3", bad)
    with pytest.raises(PlanError, match="'fc'"):
        wb.Plan({"fc": {"ratio": bad}})


@pytest.mark.parametrize(
    "text",
    [
        "[1, 2]",
        '{"layers": [1]}',
        '{"layers": {"fc": 0.5}, "what": 1}',
        '{"layers": {"fc": {"ratio": 0.5, "granularty": "weight"}}}',
        '{"layers": {"fc": {"granularity": "weight"}}}',
        '{"scope": "planet", "default": {"ratio": 0.1}}',
        '{"version": 7}',
        "not json",
    ],
)
def test_plan_json_of_the_wrong_shape_raises_plan_error(text):
    with pytest.raises(PlanError):
        wb.Plan.from_json(text)


@given(st.floats(0, 0.999), st.sampled_from(["weight", "neuron", "filter"]), st.sampled_from(["l1", "l2", "random"]))
def test_plan_roundtrip_property(r, g, c):
    p = wb.Plan.uniform(r, granularity=g, criterion=c).with_ratio("a.b", r / 2)
    assert wb.Plan.from_json(p.to_json()) == p


def test_arguments_after_ratio_are_keywords_and_positional_use_warns_naming_them():
    with pytest.warns(DeprecationWarning, match=r"criterion='filter'"):  # the old trap: this sets the criterion
        p = wb.Plan.global_(0.5, "filter")
    assert p.default.criterion == "filter" and p.default.granularity == "weight"
    with pytest.warns(DeprecationWarning, match=r"granularity='filter', criterion='l1'"):
        assert wb.Plan.uniform(0.5, "filter", "l1") == wb.Plan.uniform(0.5, granularity="filter", criterion="l1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        wb.Plan.global_(0.5, criterion="l1", granularity="filter")
    with pytest.raises(TypeError, match="multiple values"):
        wb.Plan.uniform(0.5, "filter", granularity="neuron")
