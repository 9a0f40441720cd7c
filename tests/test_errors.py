"""errors.py: the workbench's error types, exported where users look; each is also the built-in exception that code
written before it existed catches; `suggest` names the closest choices or lists the valid ones."""

import warnings

import pytest
from hypothesis import given
from hypothesis import strategies as st

import workbench as wb
from workbench import errors
from workbench.errors import (
    CriterionError,
    DataError,
    ExportError,
    GranularityError,
    ModelError,
    NotABenchError,
    OutsideEditError,
    PlanError,
    TargetError,
    WorkbenchError,
    WorkbenchWarning,
    suggest,
)

ERRORS = [n for n in errors.__all__ if n.endswith("Error")]


def test_errors_are_workbench_errors_exported_where_users_look():
    assert wb.ExportError is wb.errors.ExportError is wb.sparse.ExportError
    assert issubclass(ExportError, wb.WorkbenchError) and "ExportError" in wb.__all__
    assert "ExportError" in wb.errors.__all__


@pytest.mark.parametrize("name", ERRORS)
def test_every_error_is_a_workbench_error_on_the_top_level(name):
    cls = getattr(errors, name)
    assert issubclass(cls, WorkbenchError) and not issubclass(cls, Warning)
    assert getattr(wb, name) is cls and name in wb.__all__
    assert cls.__doc__ and cls.__doc__.strip()  # says when it is raised


@pytest.mark.parametrize(
    ("cls", "builtin"),
    [
        (PlanError, ValueError),
        (TargetError, KeyError),
        (TargetError, ValueError),
        (GranularityError, ValueError),
        (CriterionError, KeyError),
        (ModelError, ValueError),
        (DataError, ValueError),
        (ExportError, ValueError),
        (NotABenchError, TypeError),
        (OutsideEditError, RuntimeError),
    ],
)
def test_each_error_is_caught_as_the_builtin_exception_it_refines(cls, builtin):
    with pytest.raises(builtin):
        raise cls("message")


@pytest.mark.parametrize("cls", [TargetError, CriterionError])
def test_key_errors_print_their_message_unquoted(cls):
    msg = "no layer 'fetures.0' in this model. Did you mean 'features.0'?"
    assert str(cls(msg)) == msg  # a plain KeyError would print repr(msg), with quotes and escapes
    assert str(KeyError(msg)) != msg
    assert str(cls()) == ""


def test_outside_edit_error_keeps_its_own_copy_of_the_edits():
    edits = {"0.weight": "changed in place"}
    err = OutsideEditError("weights changed behind the workbench's back", edits)
    edits["1.weight"] = "swapped"
    assert err.edits == {"0.weight": "changed in place"} and str(err).startswith("weights changed")
    assert OutsideEditError("no edits named").edits == {}


def test_the_warning_is_a_user_warning_and_no_error():
    assert issubclass(WorkbenchWarning, UserWarning) and not issubclass(WorkbenchWarning, WorkbenchError)
    with pytest.warns(WorkbenchWarning, match="tied"):
        warnings.warn("tied weights pruned once", WorkbenchWarning, stacklevel=1)


def test_suggest_names_the_closest_or_lists_the_valid_choices():
    layers = ["features.0", "features.3", "classifier.1"]
    assert suggest("fetures.0", layers) == " Did you mean 'features.0' or 'features.3'?"
    assert suggest("zzz", layers, "layer") == " Valid layers: 'features.0', 'features.3', 'classifier.1'."
    assert suggest("anything", []) == ""
    many = [f"name{i:02d}" for i in range(20)]
    assert suggest("q", many) == " Valid names: " + ", ".join(repr(n) for n in many[:12]) + ", ...."  # 12, then ...


@given(st.lists(st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=12), min_size=1))
def test_suggest_for_a_valid_name_offers_that_name(choices):
    name = choices[-1]
    hint = suggest(name, choices)
    assert hint.startswith(" Did you mean ") and repr(name) in hint
    assert hint.count(" or ") <= 2  # at most three suggestions
