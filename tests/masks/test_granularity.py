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
