"""training/prune_timing.py: compare_timing runs every arm at equal sparsity and epochs, the bench back where it
started, a table and curves."""

import pytest
from conftest import assert_bitwise, snapshot
from test_schedules import mlp_bench

import workbench as wb
from workbench.masks import n_to_prune

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is fastest and steadiest


def test_every_arm_at_equal_sparsity_and_epochs_and_the_bench_ends_where_it_started():
    model, bench = mlp_bench()
    start = snapshot(model)
    res = wb.training.compare_timing(bench, 0.8, epochs=4, methods=wb.training.compare.METHODS, rounds=2, steps=3)
    assert_bitwise(model, start)
    assert bench.store.position == 0
    rows = {r["method"]: r for r in res.rows}
    assert list(rows) == ["dense", "pre", "during", "post", "post-iterative"]
    total = 8 * 32 + 32 * 3
    for m, r in rows.items():
        assert r["epochs"] == 4, m
        assert r["sparsity"] == (0.0 if m == "dense" else n_to_prune(0.8, total) / total), m
        c = res.curves[m]
        assert len(c["epoch"]) == len(c["metric"]) == len(c["sparsity"]) and c["epoch"][-1] == 4
    assert rows["pre"]["pruned_metric"] is not None and rows["dense"]["pruned_metric"] is None
    text = res.table()
    assert "post-iterative" in text and "80.1%" in text  # n_to_prune(0.8, 352) / 352
    assert res.to_dict()["rows"][0]["method"] == "dense"


def test_plot_and_bad_methods():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _, bench = mlp_bench()
    res = wb.training.compare_timing(bench, 0.5, epochs=2, methods=("during", "post"), steps=2)
    fig, ax = plt.subplots()
    lines = wb.training.plot_timing(res, ax)
    assert [ln.get_label() for ln in lines] == ["during", "post"]
    plt.close(fig)
    with pytest.raises(wb.training.TrainingError, match="methods must be chosen from"):
        wb.training.compare_timing(bench, 0.5, methods=("later",))


def test_a_bench_state_runs_the_same_arms_and_ends_where_it_started():
    _, bench = mlp_bench()
    model, twin = mlp_bench()
    start = snapshot(model)
    kw = dict(epochs=2, methods=("pre", "post"), at_init="snip", lr=1e-2)
    res, res_state = wb.training.compare_timing(bench, 0.8, **kw), wb.training.compare_timing(twin.state, 0.8, **kw)
    assert_bitwise(model, start)
    kinds = [e.kind for e in twin.history[1:]]
    assert twin.store.position == 0 and kinds == ["finetune", "prune", "finetune"]  # the "post" arm, undone
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in res.rows] == [
        {k: v for k, v in r.items() if k != "seconds"} for r in res_state.rows
    ]


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"ratio": 1.0}, r"ratio must be a number in \(0, 0.999\], got 1.0"),
        ({"epochs": 2.5}, r"epochs must be an integer in \[1, inf\], got 2.5"),
        ({"epochs": 2, "dense_epochs": 2}, r"dense_epochs must be an integer in \[0, 1\], got 2"),
        ({"methods": ()}, r"methods must be chosen from .*got \[\]"),
    ],
)
def test_bad_arguments_are_named_with_their_range_before_anything_runs(kw, match):
    model, bench = mlp_bench()
    start = snapshot(model)
    with pytest.raises(wb.training.TrainingError, match=match):
        wb.training.compare_timing(bench, **{"ratio": 0.5, **kw})
    assert_bitwise(model, start)
    assert len(bench.history) == 1  # nothing trained, pruned or recorded


def test_the_result_is_plain_data():
    import json

    _, bench = mlp_bench()
    res = wb.training.compare_timing(bench, 0.5, epochs=2, methods=("pre",), at_init="magnitude", steps=2)
    d = json.loads(json.dumps(res.to_dict()))  # JSON through and through
    assert d["sparsity"] == 0.5 and d["epochs"] == 2 and d["info"]["at_init"] == "magnitude"
    assert d["curves"]["pre"]["epoch"] == res.curves["pre"]["epoch"].tolist() == [0.0, 0.0, 1.0, 2.0]
    assert str(res) == res.table() and res.table().splitlines()[2].startswith("pre ")
