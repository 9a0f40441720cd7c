"""_deprecate.py: renamed and keyword-only parameters keep working for one release: the call gives what the new
spelling gives, warns naming the new spelling at the caller's line, and a clash between old and new is an error."""

import warnings

import pytest

from workbench._deprecate import keyword_only_after, renamed


@renamed(final="ratio", kind="granularity")
def gradual(bench=None, *, ratio=0.9, granularity="weight"):
    """Docstring kept."""
    return bench, ratio, granularity


@keyword_only_after(1, old_order=("granularity", "criterion"))
def uniform(ratio, *, granularity="weight", criterion="magnitude"):
    return ratio, granularity, criterion


def test_a_renamed_keyword_gives_what_the_new_one_gives_with_a_warning_at_the_caller():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new spelling does not warn
        assert gradual("b", ratio=0.5, granularity="filter") == ("b", 0.5, "filter")
    with pytest.warns(
        DeprecationWarning, match=r"^gradual\(final=\.\.\.\) is deprecated: use gradual\(ratio=\.\.\.\)$"
    ):
        assert gradual("b", final=0.5) == ("b", 0.5, "weight")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gradual(final=0.5, kind="filter")
    assert [str(w.message) for w in caught] == [
        "gradual(final=...) is deprecated: use gradual(ratio=...)",
        "gradual(kind=...) is deprecated: use gradual(granularity=...)",
    ]
    assert {w.filename for w in caught} == {__file__}  # stacklevel: the warning points at this call, not the shim
    assert gradual.__name__ == "gradual" and gradual.__doc__ == "Docstring kept."


def test_old_and_new_names_together_are_an_error_naming_both():
    with pytest.raises(TypeError, match=r"gradual\(\) got both final= \(deprecated\) and ratio=; pass only ratio="):
        gradual(final=0.5, ratio=0.6)


def test_positional_values_in_the_old_order_still_work_with_a_warning_naming_the_keywords():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert uniform(0.5, granularity="filter") == (0.5, "filter", "magnitude")
    with pytest.warns(DeprecationWarning, match=r"uniform: pass granularity by keyword \(granularity='filter'\)") as w:
        assert uniform(0.5, "filter") == (0.5, "filter", "magnitude")
    assert w[0].filename == __file__
    with pytest.warns(
        DeprecationWarning, match=r"pass granularity, criterion by keyword \(granularity='filter', criterion='l1'\)"
    ):
        assert uniform(0.5, "filter", "l1") == (0.5, "filter", "l1")


def test_too_many_positionals_or_a_value_given_twice_are_errors():
    with pytest.raises(TypeError, match=r"uniform\(\) takes at most 3 positional arguments"):
        uniform(0.5, "filter", "l1", "extra")
    with pytest.raises(TypeError, match=r"uniform\(\) got multiple values for argument 'granularity'"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            uniform(0.5, "filter", granularity="block")
