"""The one registry helper behind the extension points (workbench/_registry.py)."""

import warnings

import pytest

from workbench._registry import Registry


class Unknown(KeyError):
    pass


def _colours() -> Registry:
    r = Registry("colour", Unknown, hint="Register one with register_colour.")
    r.register("red", 1, aliases=("rouge",))
    r.register("green", 2)
    r.alias("lime", "green", deprecated=True)
    return r


def test_names_keep_registration_order_and_filter_by_pattern():
    r = _colours()
    assert r.names() == ["red", "green"] == list(r) and len(r) == 2
    assert r.names(aliases=True) == ["red", "rouge", "green"]  # deprecated aliases are not listed
    assert r.names("g*") == ["green"] and r.names("r*", aliases=True) == ["red", "rouge"]
    assert dict(r.items()) == {"red": 1, "green": 2}
    assert "rouge" in r and "lime" in r and "blue" not in r and 3 not in r


def test_aliases_resolve_and_a_deprecated_one_warns_once_per_use():
    r = _colours()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert r.get("rouge") == 1 and r.canonical("rouge") == "red"
    with pytest.warns(DeprecationWarning, match="colour 'lime' is deprecated: use 'green'"):
        assert r.get("lime") == 2


def test_unknown_names_raise_the_registry_error_with_suggestions_and_hint():
    r = _colours()
    with pytest.raises(Unknown, match=r"unknown colour 'gren'.*'green'.*Register one with register_colour"):
        r.get("gren")
    with pytest.raises(Unknown, match="cannot alias 'verde' to unregistered colour 'verd'"):
        r.alias("verde", "verd")


def test_taken_names_need_overwrite_and_unregister_removes_the_aliases_too():
    r = _colours()
    for taken in ("red", "rouge"):
        with pytest.raises(ValueError, match="already registered"):
            r.register(taken, 9)
    r.register("red", 10, overwrite=True)
    assert r.get("rouge") == 10  # the alias follows the name
    assert r.replace("rouge", 11) == 11 and r.get("red") == 11
    assert r.unregister("red") == 11
    assert "red" not in r and "rouge" not in r and r.names() == ["green"]
    r.register("rouge", 5)  # a freed alias can become a name
    assert r.get("rouge") == 5
