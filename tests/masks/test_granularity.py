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
