"""ui/preview.py: the preview counts exactly what applying the plan would prune, without running or writing the
model; rankings are made once per (row, granularity, criterion) and made again only after the model changes."""

import pytest
from conftest import assert_bitwise, snapshot
from zoo import make

import workbench as wb
from workbench.plan import LayerPlan
from workbench.ui import preview as preview_module
from workbench.ui.preview import Preview, PreviewModel


def _model():
    model, data = make("rescat")
    bench = wb.Workbench(model, data)
    return model, bench, PreviewModel(bench, {}, 0.0)


def test_kept_shares_and_an_empty_model():
    p = Preview(100, 25, 200.0, 50.0, None, "", 0.0)
    assert (p.params_kept, p.flops_kept) == (0.75, 0.75)
    assert (
        Preview(0, 0, 0.0, 0.0, None, "", 0.0).params_kept == 1.0 == Preview(0, 0, 0.0, 0.0, None, "", 0.0).flops_kept
    )


@pytest.mark.parametrize("granularity", ["weight", "filter"])
def test_the_preview_counts_what_apply_prunes_and_writes_nothing(granularity):
    model, bench, pm = _model()
    bench.apply(wb.Plan.uniform(0.3), evaluate=False)  # earlier steps count too, overlaps once
    before = snapshot(model)
    names = {"b", *pm.row_of("a", granularity, "l1").members}  # filters: the whole coupled group (a, b, dw, stem.0)
    entries = {n: LayerPlan(0.5, granularity, "l1") for n in names}
    p = pm.preview(entries)
    assert_bitwise(model, before)
    assert p.params_total == sum(t.numel() for t in model.parameters())
    bench.apply(wb.Plan(entries), evaluate=False)
    assert p.params_removed == sum(int(m.sum()) for m in bench.store.masks().values())


def test_rankings_are_cached_until_the_model_changes(monkeypatch):
    _, bench, pm = _model()
    calls = []
    real = preview_module.rows_for
    monkeypatch.setattr(preview_module, "rows_for", lambda *a, **k: calls.append(k["layers"]) or real(*a, **k))
    for ratio in (0.2, 0.4, 0.6):  # a slider moving: one ranking of the layer
        pm.preview({"a": LayerPlan(ratio, "weight", "magnitude")})
    assert calls == [["a"]]
    pm.preview({"a": LayerPlan(0.5, "filter", "l1")})  # structured: every coupled group ranked at once
    assert calls == [["a"], None]
    bench.apply(wb.Plan.uniform(0.3), evaluate=False)  # the model changed: ranked again
    pm.preview({"a": LayerPlan(0.2, "weight", "magnitude")})
    assert calls == [["a"], None, ["a"]]
    bench.undo()
    pm.preview({"a": LayerPlan(0.2, "weight", "magnitude")})
    assert calls == [["a"], None, ["a"], ["a"]]


def test_a_prediction_only_when_the_scan_covers_every_row_of_the_plan():
    _, bench, pm = _model()
    sens = bench.sensitivity((0.25, 0.5), progress=False)
    p = pm.preview({"a": LayerPlan(0.5, "weight", "magnitude")}, sens)
    assert p.predicted == pytest.approx(sens.predict("a", 0.5)) and p.predicted_units == sens.units
    assert pm.preview({"a": LayerPlan(0.5, "weight", "l1")}, sens).predicted is None  # another criterion
    assert pm.preview({"a": LayerPlan(0.5, "weight", "magnitude")}).predicted is None  # no scan
