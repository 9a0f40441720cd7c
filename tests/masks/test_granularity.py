import pytest
from torch import nn

import workbench as wb
from workbench.errors import GranularityError
from workbench.masks import available_granularities, get_granularity


def test_patterned_names_resolve():
    g = get_granularity("2:4")
    assert (g.family, g.shape, g.fixed_ratio, g.structured) == ("N:M", (2, 4), 0.5, False)
    assert get_granularity("3:8").fixed_ratio == pytest.approx(5 / 8)
    b = get_granularity("block16x8")
    assert (b.family, b.shape, b.fixed_ratio) == ("block", (16, 8), None)
    assert get_granularity("filter").family == "filter" and not get_granularity("weight").patterned
    for ex in ("2:4", "block4x4"):
        assert ex in available_granularities()


@pytest.mark.parametrize("bad", ["2:4:8", "blok4x4", "block4", "4:2", "0:4", "block0x2", 3])
def test_bad_names_say_what_exists(bad):
    with pytest.raises(GranularityError):
        get_granularity(bad)


def test_targets_list_the_patterns_that_fit_and_check_any_other():
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 6), nn.Conv2d(3, 4, 1), nn.LSTM(8, 8))
    t = wb.find_targets(model)
    assert t["0"].patterns == ("2:4", "block4x4", "block16x16", "block32x32")
    assert t["2"].patterns == ("2:4",)  # 6 rows: no 4x4 blocks
    assert t["3"].patterns == () and not t["3"].supports("2:4")  # 3 input channels
    assert t["0"].supports("1:8") and t["0"].supports("block2x64") and not t["0"].supports("1:5")
    assert t["4"].patterns == () and not t["4"].supports("2:4")  # LSTM: weight only
    assert "2:4" in repr(t)


def test_a_registered_granularity_carries_its_selection_and_one_without_any_is_refused():
    import torch

    import workbench as wb
    from workbench.errors import GranularityError
    from workbench.masks import Granularity, get_granularity, register_granularity, unregister_granularity

    with pytest.raises(GranularityError, match="needs mask_fn"):  # it used to prune single weights silently
        register_granularity(Granularity("nothing-said", "?", ("linear",), False), overwrite=True)
    with pytest.raises(GranularityError, match="names the unit"):
        register_granularity(Granularity("no-unit", "?", ("linear",), True), overwrite=True)

    def first_columns(scores, ratio, current, g):  # a pattern that ignores the scores: the first columns go
        mask = torch.zeros_like(scores, dtype=torch.bool)
        mask[:, : round(ratio * scores.shape[1])] = True
        return mask

    try:
        register_granularity(
            Granularity("cols-test", "first columns", ("linear",), False, mask_fn=first_columns), overwrite=True
        )
        assert get_granularity("cols-test").mask_fn is first_columns
        lin = torch.nn.Linear(8, 4)
        bench = wb.Workbench(lin, [(torch.randn(5, 8), torch.randint(0, 4, (5,)))])
        assert "cols-test" in bench.targets[""].granularities  # every target of its kinds offers it
        bench.apply(wb.Plan.uniform(0.25, granularity="cols-test"), evaluate=False)
        assert (lin.weight[:, :2] == 0).all() and (lin.weight[:, 2:] != 0).all()
    finally:
        unregister_granularity("cols-test")


def test_a_registered_structured_granularity_is_seen_by_targets_compare_and_recommend():
    import sys

    import torch

    from workbench.compare import strategies
    from workbench.masks import Granularity, register_granularity, structured_granularities, unregister_granularity
    from workbench.recommend import plans

    built_in = ("filter", "neuron", "head", "lstm-unit")
    assert structured_granularities() == built_in and structured_granularities(per_layer=False) == ("hidden", "layer")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 6, 3), nn.ReLU(), nn.Flatten(), nn.Linear(24, 3))
    data = [(torch.randn(4, 3, 6, 6), torch.randint(0, 3, (4,)))]
    register_granularity(Granularity("channels-test", "conv output channels", ("conv",), True, unit="channel"))
    try:
        want = ("filter", "channels-test", "neuron", "head", "lstm-unit")  # convs' units first, then by registration
        assert structured_granularities() == want
        for where in (strategies, plans, sys.modules["workbench.compare"], sys.modules["workbench.recommend"]):
            assert where.STRUCTURED == want
        bench = wb.Workbench(model, data)
        assert bench.targets["0"].granularities[:3] == ("weight", "filter", "channels-test")
        assert "channels-test" not in bench.targets["5"].granularities  # a Linear: not one of its kinds
        assert {m for _, ms in plans._structured_rows(bench, "l1") for m in ms} == {"0", "2"}  # 5: the outputs
        rows = plans._structured_rows(bench, "l1", ("channels-test",))
        assert [ms for _, ms in rows] == [ms for _, ms in plans._structured_rows(bench, "l1", ("filter",))]
        # the same unit on the same layers removes exactly what `filter` removes
        bench.apply(wb.Plan.uniform(0.5, granularity="channels-test", criterion="l1"), evaluate=False)
        mine = {k: v.clone() for k, v in bench.store.masks().items()}
        bench.undo()
        bench.apply(wb.Plan.uniform(0.5, granularity="filter", criterion="l1"), evaluate=False)
        theirs = bench.store.masks()
        assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    finally:
        unregister_granularity("channels-test")
    assert structured_granularities() == built_in and strategies.STRUCTURED == built_in
