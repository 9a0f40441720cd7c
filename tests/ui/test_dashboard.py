"""Headless dashboard tests: widgets driven by setting values and clicking, synchronously."""

import warnings

import numpy as np
import pytest
from conftest import assert_bitwise, assert_plain, snapshot
from zoo import make

import workbench as wb

pytest.importorskip("ipywidgets")
pytest.importorskip("matplotlib")

SYNC = {"threaded": False, "scheduler": lambda delay, fn: fn()}


def dash(bench):
    return bench.show(new=True, **SYNC)


@pytest.fixture
def cnn(demo_models):
    """A fresh copy of the shipped demo CNN and its data for each test."""
    return demo_models["digits-cnn"]


def test_building_the_dashboard_changes_nothing_and_shows_every_part(cnn):
    model, data = cnn
    snap = snapshot(model)
    bench = wb.Workbench(model, data)
    d = dash(bench)
    box = d.widget()
    assert box is d.widget()  # built once
    assert set(d.tabs) >= {"sensitivity", "entropy", "connectivity", "profile", "export"}
    assert set(d.editor.rows) == {t.name for t in bench.targets}
    assert "accuracy" in d.header.metric.value and "MFLOPs" in d.header.text.value
    assert_bitwise(model, snap)
    assert_plain(model)


def test_slider_preview_apply_undo_redo_reset_and_history(cnn):
    model, data = cnn
    snap = snapshot(model)
    bench = wb.Workbench(model, data)
    d = dash(bench)
    dense = bench.evaluate()["metric"]  # the dense entry shows the metric the header shows, from the start
    assert f"metric {dense:.4f}" in d.actions.history.options[0][0] and f"{dense:.4f}" in d.header.metric.value
    row = d.editor.rows["features.3"]
    row.slider.value = 0.5
    p = d.editor.last_preview
    assert p.params_removed == wb.masks.n_to_prune(0.5, 4608) and "parameters kept" in d.editor.preview_label.value
    assert d.editor.plan() == wb.Plan({"features.3": wb.LayerPlan(0.5, "weight", "magnitude")})
    assert_bitwise(model, snap)  # the preview never touches the model
    metric_before = d.header.metric.value
    d.actions.apply_button.click()
    assert bench.store.position == 1 and int(bench.store.current("features.3.weight").sum()) == 2304
    assert d.header.metric.value != metric_before or "0." in d.header.metric.value
    assert len(d.actions.history.options) == 2 and d.actions.history.value == 1
    assert not d.actions.undo_button.disabled and d.actions.redo_button.disabled
    d.actions.undo_button.click()
    assert bench.store.position == 0 and d.actions.undo_button.disabled and not d.actions.redo_button.disabled
    assert_bitwise(model, snap)
    d.actions.redo_button.click()
    assert bench.store.position == 1
    d.actions.history.value = 0  # clicking the dense entry goes back to it
    assert bench.store.position == 0
    assert_bitwise(model, snap)
    d.actions.history.value = 1
    assert bench.store.position == 1
    d.actions.reset_button.click()
    assert_bitwise(model, snap)
    assert_plain(model)


def test_sensitivity_scan_heatmap_and_cell_click(cnn):
    model, data = cnn
    bench = wb.Workbench(model, data)
    d = dash(bench)
    s = d.tabs["sensitivity"]
    assert s.image.layout.display == "none"
    s.mode.value = "estimate"
    s.scan_button.click()
    assert bench.last_sensitivity is not None and bench.last_sensitivity.mode == "estimate"
    assert "Fisher" in bench.last_sensitivity.engine  # first order alone predicts layers improving when pruned
    assert "estimate scan" in s.source.value and "Fisher" in s.source.value  # the panel says which scan it shows
    assert s.image.value[:4] == b"\x89PNG"
    d.editor.rows["features.3"].slider.value = 0.4
    assert d.editor.last_preview.predicted is not None and "predicted" in d.editor.preview_label.value
    _, table = s.grid.children
    first_row = table.children[0]
    layer = first_row.children[0].value
    first_row.children[3].click()  # third ratio
    assert d.editor.rows[layer].slider.value == pytest.approx(bench.last_sensitivity.ratios[2])


def test_sensitivity_refine_fills_in_near_the_sliders_and_stop_keeps_what_landed(cnn):
    model, data = cnn
    bench = wb.Workbench(model, data)
    before = snapshot(model)
    d = dash(bench)
    s = d.tabs["sensitivity"]
    s.redraw_every = 0.0  # redraw after every cell (the default throttles to 2 redraws a second)
    d.editor.rows["features.3"].slider.value = 0.5
    s.mode.value = "estimate"
    s.scan_button.click()  # a table of the estimate, to be hidden while the refine scan below fills in
    assert s.grid.layout.display != "none" and s.grid.children
    frames = []
    real = s.refresh
    s.refresh = lambda sens=None: (frames.append((sens, s.grid.layout.display)), real(sens))[1]
    s.mode.value = "refine"
    s.scan_button.click()
    sens = bench.last_sensitivity
    assert sens.mode == "refine" and sens.exact.all() and 0.0 <= sens.trust <= 1.0
    # the previous scan's table is hidden while the heatmap fills in, and back (this scan's) when it ends
    assert all(shown == "none" for f, shown in frames if f is not None)
    assert s.grid.layout.display != "none" and "click a cell" in s.note.value
    assert bench.last_sensitivity is sens and d.log.last.startswith("refine sensitivity scan: done")
    live = [f for f, _ in frames if f is not None]
    assert len(live) >= 3 and int(live[0].exact.sum()) < int(live[-1].exact.sum())  # the heatmap filled in
    i = sens.row("features.3")
    first = live[1]  # after the checked cells, the cells next to the slider's ratio (0.5) come first
    new = {tuple(c) for c in np.argwhere(first.exact & ~live[0].exact)}
    assert new and all(r == i and abs(sens.ratios[j] - 0.5) <= 0.11 for r, j in new)
    assert "cells exact" in s.source.value and "trust" in s.source.value
    assert any(b.description.startswith("•") for row in s.grid.children[1].children for b in row.children[1:])
    cell = s.grid.children[1].children[i].children[1]  # redraws of a map of the same shape reuse its buttons
    assert cell.description == f"•{sens.values[i, 0]:+.3f}"
    # Stop mid-scan: the map keeps the cells measured so far
    n = [0]

    def stop_after_five(sens):
        n[0] += 1
        if n[0] == 5:
            d.busy.stop()

    s.refresh = real
    s._landed, landed = (lambda sens: (stop_after_five(sens), landed(sens))), s._landed
    s.scan_button.click()
    part = bench.last_sensitivity
    assert part.mode == "refine" and not part.complete and 0 < int(part.exact.sum()) < part.exact.size
    assert f"{int(part.exact.sum())}/{part.exact.size} cells exact" in s.source.value
    assert "stopped" in d.log.last and "kept what it computed" in d.log.last  # not "done"
    assert s.grid.layout.display != "none"
    assert part.fill in ("log-linear", "corrected")  # the caption says how the other cells were predicted
    assert {"log-linear": "interpolated log-linearly", "corrected": "estimate corrected"}[part.fill] in s.source.value
    assert s.grid.children[1].children[i].children[1] is cell
    assert cell.description == ("•" if part.exact[i, 0] else "") + f"{part.values[i, 0]:+.3f}"
    assert_bitwise(model, before)
    assert_plain(model)


def test_sensitivity_refine_redraws_send_the_heatmap_and_caption_after_it(cnn, monkeypatch):
    """While a refine scan fills in, a redraw sends the browser the heatmap, then the caption ("N/M cells exact"),
    once: never a count the map does not show yet (the heatmap's render takes a while on a large model), nor a caption
    half-built. It does not send the table of cells (two updates per changed cell: 2000 a redraw on a model with
    121 targets, beyond the 1000 a second Jupyter's server lets through before it drops them, which left the
    browser's table out of step with the caption); the table follows when the scan ends, marks and all."""
    import ipywidgets

    model, data = cnn
    bench = wb.Workbench(model, data)
    d = dash(bench)
    s = d.tabs["sensitivity"]
    s.redraw_every = 0.0
    sent = []  # every widget update sent to the browser: (widget, keys)
    send = ipywidgets.Widget.send_state
    monkeypatch.setattr(ipywidgets.Widget, "send_state", lambda w, key=None: (sent.append((w, key)), send(w, key))[1])
    shown = []  # at every caption change: the caption and the image shown then
    s.source.observe(lambda ch: shown.append((ch["new"], s.image.value)), names="value")
    frames = []  # per redraw: the caption and image it left, and the updates it sent
    real = s.refresh

    def refresh(sens=None):
        sent.clear()
        real(sens)
        frames.append((s.source.value, s.image.value, [(w, k) for w, k in sent if w is not d.busy.progress]))

    s.refresh = refresh
    s.mode.value = "refine"
    s.scan_button.click()
    assert len(frames) >= 3 and [c for c, _ in shown] == [c for c, _, _ in frames]  # one change per redraw
    for (caption, image), (_, drawn, _) in zip(shown, frames):
        assert image == drawn, f"the caption {caption!r} came before its heatmap"
    for _, _, updates in frames[:-1]:  # while it fills in: the image, then the caption (and once, showing it)
        assert [w for w, _ in updates if w is not s.image.layout] == [s.image, s.source], updates
    # at the end, the table: a new one sends its cells as its widgets open, then the caption
    assert [w for w, _ in frames[-1][2]] == [s.grid, s.source], frames[-1][2]
    sens = bench.last_sensitivity
    marked = sum(b.description.startswith("•") for row in s._buttons for b in row)
    assert sens.exact.all() and marked == sens.exact.size and f"{marked}/{marked} cells exact" in s.source.value
    # the table's rows keep their height in its scrolled box (a flex box shrinks them to fit: 121 rows of 2 px, the
    # buttons overlapping) and a cell's text fits it (a button's padding cut "•+0.047" to "•+0.0…"): the browser test
    # sees both; here only the layout can be checked
    _, table = s.grid.children
    assert table.layout.overflow == "auto" and all(row.layout.flex == "0 0 auto" for row in table.children)
    assert all(b.layout.padding == "0" for row in s._buttons for b in row)


def test_entropy_connectivity_profile_panels_render(cnn):
    model, data = cnn
    bench = wb.Workbench(model, data)
    d = dash(bench)
    e = d.tabs["entropy"]
    e.button.click()
    assert e.image.value[:4] == b"\x89PNG" and e.layer.options
    c = d.tabs["connectivity"]
    d.select("connectivity")
    before = c.image.value
    c.layer.value = "features.3"
    assert c.image.value[:4] == b"\x89PNG" and c.image.value != before
    assert c.summary.value.startswith("100.0% of connections survive")
    d.editor.rows["features.3"].slider.value = 0.8
    d.actions.apply_button.click()  # a kernel is a connection: it goes only when all 9 of its weights go
    conn = bench.connectivity("features.3")
    assert c.summary.value.startswith(f"{conn.surviving:.1%} of connections survive") and conn.surviving < 1
    d.select("profile")
    prof = d.tabs["profile"]
    assert prof.image.value[:4] == b"\x89PNG"
    prof.button.click()  # per-layer latency on demand
    assert prof.metric.value == "latency" and not np.isnan(d.last_profile.latency_ms).all()


def test_open_entropy_tab_recomputes_after_apply_and_undo():
    """Apply runs in the busy worker; the Entropy tab's refresh waits for it and then recomputes (not skipped)."""
    model, data = wb.demo.load("digits-cnn")  # a fresh copy: other tests here prune the shared one
    bench = wb.Workbench(model, data)
    d = dash(bench)
    d.select("entropy")
    e = d.tabs["entropy"]
    e.button.click()
    first, dense_result = e.image.value, e.result
    d.editor.rows["features.3"].slider.value = 0.8
    d.actions.apply_button.click()
    assert e.result is not dense_result and e.image.value != first  # recomputed on the pruned model
    assert not any("ignored" in text for _, text in d.log.lines)
    after_apply = e.result
    d.actions.undo_button.click()
    assert e.result is not after_apply


def test_layer_granularity_from_the_editor_previews_and_applies_a_residual_branch():
    model, data = wb.demo.load("digits-resnet")
    bench = wb.Workbench(model, data)
    d = dash(bench)
    row = d.editor.rows["layer1.conv1"]
    assert "layer" in row.granularity.options
    row.granularity.value = "layer"
    row.slider.value = 0.5
    branch = bench.groups.branches["layer1"]
    kept = sum(p.numel() for p in model.parameters()) - sum(model.get_parameter(p).numel() for p in branch.params)
    assert f"({kept:,} of" in d.editor.preview_label.value  # the preview counts the whole branch
    d.actions.apply_button.click()
    assert set(bench.masks) == set(branch.params)


def test_bad_plans_show_an_error_and_leave_the_model_alone():
    model, data = make("rescat")
    bench = wb.Workbench(model, data)
    d = dash(bench)
    snap = snapshot(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with __import__("torch").no_grad():
            model.b.weight[0, 0, 0, 0] = float("nan")
    snap = snapshot(model)
    d.editor.rows["b"].slider.value = 0.5
    d.actions.apply_button.click()
    assert "contains NaN" in d.log.last and bench.store.position == 0
    assert_bitwise(model, snap)


def test_registered_panels_appear_and_a_broken_one_is_reported():
    from workbench.ui import Panel, panels, register_panel

    class Hello(Panel):
        title = "Hello"

        def widget(self):
            import ipywidgets as W

            return W.Label("hello")

    class Broken(Panel):
        def __init__(self, dashboard):
            raise RuntimeError("boom")

    register_panel("hello-test", Hello, overwrite=True)
    register_panel("broken-test", Broken, overwrite=True)
    try:
        model, data = make("rescat")
        d = dash(wb.Workbench(model, data))
        assert "hello-test" in d.tabs and "broken-test" not in d.tabs
        assert "boom" in d.log.widget.value
        d.widget()
    finally:
        from workbench.ui import dashboard

        dashboard._PANELS.pop("hello-test")
        dashboard._PANELS.pop("broken-test")
    assert "hello-test" not in panels()


@pytest.mark.parametrize("name", ["digits-mlp", "digits-resnet", "digits-lstm", "digits-transformer"])
def test_dashboard_on_every_demo_model(demo_models, name):
    model, data = demo_models[name]
    bench = wb.Workbench(model, data)
    snap = snapshot(model)
    d = dash(bench)
    first = next(iter(d.editor.rows.values()))
    first.slider.value = 0.5
    d.actions.apply_button.click()
    assert bench.store.position == 1, d.log.widget.value
    d.actions.undo_button.click()
    assert_bitwise(model, snap)
    d.widget()


def test_a_large_table_is_updated_in_chunks_the_server_does_not_drop(cnn, monkeypatch):
    """Jupyter's server drops a kernel's widget updates beyond 1000 a second: a map of the same shape as the one
    shown updates only its changed cells (two messages each), UPDATE_CHUNK at a time, UPDATE_PAUSE seconds apart."""
    from workbench.analysis.sensitivity import SensitivityResult
    from workbench.ui import analysis_panels

    model, data = cnn
    d = dash(wb.Workbench(model, data))
    s = d.tabs["sensitivity"]
    layers = tuple(f"layer{i}" for i in range(70))
    ratios = np.round(np.linspace(0.1, 0.9, 9), 2)

    def result(values):
        return SensitivityResult(layers=layers, members=tuple((n,) for n in layers), ratios=ratios, values=values,
                                 baseline=0.5, metric_name="loss", higher_is_better=False, granularity="weight",
                                 criterion="l1", mode="exact")  # fmt: skip

    rng = np.random.default_rng(0)
    s.refresh(result(rng.normal(size=(70, 9))))
    pauses = []
    monkeypatch.setattr(analysis_panels.time, "sleep", pauses.append)
    new = rng.normal(size=(70, 9))
    new[:10] = np.nan  # 90 cells show "—": changed too
    s.refresh(result(new))
    changed = 630
    assert pauses == [analysis_panels.UPDATE_PAUSE] * (-(-changed // analysis_panels.UPDATE_CHUNK) - 1)
    shown = [[b.description for b in row] for row in s._buttons]
    assert shown[20][3] == f"{new[20, 3]:+.3f}" and shown[0][0] == "—"
    pauses.clear()
    s.refresh(result(new))  # nothing changed: nothing sent, no pause
    assert pauses == []
