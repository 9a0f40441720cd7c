"""compare/registry.py: strategy names, custom strategies, and one registry shared by compare and recommend."""

import pytest

import workbench as wb
from workbench.compare import StrategyError, get_strategy

from .conftest import DEFAULT

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is fastest and steadiest


def test_registry_names_and_custom_strategies(small):
    assert set(DEFAULT) | {"block4x4", "2:4"} <= set(wb.available_strategies())
    for name in wb.available_strategies():
        assert get_strategy(name).summary, name

    @wb.register_strategy("test-l2-uniform", overwrite=True)
    def _l2(bench, sparsity, ctx):
        """Uniform per-layer L2."""
        ctx.cache["calls"] = ctx.cache.get("calls", 0) + 1
        return wb.Plan.uniform(sparsity, criterion="l2")

    model, _, val, _ = small()
    res = wb.compare(model, val, ["test-l2-uniform", "2:4"], [0.5], backend=None)
    assert res.row("test-l2-uniform", 0.5)["achieved"] == pytest.approx(0.5, abs=0.01)
    assert res.row("2:4", 0.5)["achieved"] == pytest.approx(0.5, abs=0.01)
    with pytest.raises(ValueError, match="already registered"):
        wb.register_strategy("magnitude")(_l2)
    with pytest.raises(StrategyError, match=r"fixes the sparsity at 0\.5"):
        wb.compare(model, val, ["2:4"], [0.6], backend=None)


def test_one_strategy_registry_for_compare_and_recommend(small):
    from workbench._registry import Registry
    from workbench.compare import StrategyError, available_strategies, get_strategy
    from workbench.recommend import STRATEGIES
    from workbench.recommend import available_strategies as candidates

    # the same strategy under two names is one entry, and each function keeps the name it was asked by
    assert get_strategy("structured-l1") is get_strategy("filter-l1")
    assert get_strategy("global-magnitude") is get_strategy("magnitude")
    assert get_strategy("2:4").comparable and get_strategy("2:4").candidate  # one entry, both behaviours
    assert STRATEGIES["filter-l1"].name == "filter-l1" and STRATEGIES["structured-l1"].label == "structured L1"
    assert "filter-l1" not in candidates() and "structured-l1" in available_strategies()
    model, _, val, _ = small()
    res = wb.compare(model, val, ["filter-l1", "structured-l1"], [0.5], backend=None)
    a, b = res.row("filter-l1", 0.5), res.row("structured-l1", 0.5)
    assert a["achieved"] == b["achieved"] and a["metric"] == b["metric"]
    with pytest.raises(StrategyError, match="`recommend` searches; compare cannot run it"):
        wb.compare(model, val, ["allocated-weight"], [0.5], backend=None)
    with pytest.raises(StrategyError, match="Did you mean 'structured-l1'"):
        get_strategy("structured-l")
    # an alias can be deprecated: it still resolves, with a warning naming the new name
    reg = Registry("strategy", StrategyError)
    reg.register("new", 1)
    reg.alias("old", "new", deprecated=True)
    with pytest.warns(DeprecationWarning, match="'old' is deprecated: use 'new'"):
        assert reg.get("old") == 1
    assert reg.names(aliases=True) == ["new"]
