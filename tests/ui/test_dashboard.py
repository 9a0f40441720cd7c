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
    sens = bench.last_sensitivity
    assert s.table.rows == list(sens.layers) and s.table.columns == [f"{r:.0%}" for r in sens.ratios]
    layer = sens.layers[0]
    s.table.click(0, 2)  # third ratio
    assert d.editor.rows[layer].slider.value == pytest.approx(sens.ratios[2])
    # the browser sends (row, column, the row's name): a click on a table replaced since is dropped
    s.table._message(s.table, {"row": 0, "column": 4, "name": layer}, [])
    assert d.editor.rows[layer].slider.value == pytest.approx(sens.ratios[4])
    s.table._message(s.table, {"row": 0, "column": 6, "name": "not-this-layer"}, [])
    s.table._message(s.table, {"row": 0, "column": 99, "name": layer}, [])
    assert d.editor.rows[layer].slider.value == pytest.approx(sens.ratios[4])


def test_sensitivity_refine_fills_in_near_the_sliders_and_stop_keeps_what_landed(cnn):
    model, data = cnn
    bench = wb.Workbench(model, data)
    before = snapshot(model)
    d = dash(bench)
    s = d.tabs["sensitivity"]
    s.redraw_every = 0.0  # redraw after every cell (the default throttles to 2 redraws a second)
    d.editor.rows["features.3"].slider.value = 0.5
    s.mode.value = "estimate"
    s.scan_button.click()  # a table of the estimate, replaced by the refine scan's map as it fills in
    assert len(s.table.cells) == len(bench.last_sensitivity.layers)
    frames = []
    real = s.refresh
    s.refresh = lambda sens=None: (real(sens), frames.append((sens, [r[:] for r in s.table.cells])))[0]
    s.mode.value = "refine"
    s.scan_button.click()
    sens = bench.last_sensitivity
    assert sens.mode == "refine" and sens.exact.all() and 0.0 <= sens.trust <= 1.0
    assert "click a cell" in s.note.value
    assert bench.last_sensitivity is sens and d.log.last.startswith("refine sensitivity scan: done")
    live = [f for f, _ in frames if f is not None]
    assert len(live) >= 3 and int(live[0].exact.sum()) < int(live[-1].exact.sum())  # the heatmap filled in
    i = sens.row("features.3")
    first = live[1]  # after the checked cells, the cells next to the slider's ratio (0.5) come first
    new = {tuple(c) for c in np.argwhere(first.exact & ~live[0].exact)}
    assert new and all(r == i and abs(sens.ratios[j] - 0.5) <= 0.11 for r, j in new)
    assert "cells exact" in s.source.value and "trust" in s.source.value
    # the table follows the heatmap: each redraw marks the cells exact so far •, the last one all of them
    marks = [(int(f.exact.sum()), sum(c[0].startswith("•") for row in cells for c in row)) for f, cells in frames if f]
    assert all(n == m for n, m in marks) and marks[0] < marks[-1], marks
    assert all(c[0].startswith("•") for row in s.table.cells for c in row)
    assert s.table.cells[i][0][0] == f"•{sens.values[i, 0]:+.3f}"
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
    assert part.fill in ("log-linear", "corrected")  # the caption says how the other cells were predicted
    assert {"log-linear": "interpolated log-linearly", "corrected": "estimate corrected"}[part.fill] in s.source.value
    assert s.table.cells[i][0][0] == ("•" if part.exact[i, 0] else "") + f"{part.values[i, 0]:+.3f}"
    marked = sum(c[0].startswith("•") for row in s.table.cells for c in row)
    assert marked == int(part.exact.sum())
    assert_bitwise(model, before)
    assert_plain(model)


def _record_updates(monkeypatch) -> list:
    """Every widget update sent to the browser from now on, as (widget, keys) (keys None: the whole state). hold_sync
    calls send_state with no keys when nothing changed (nothing goes out: not recorded), and clears the set of keys
    it passed afterwards (copied here)."""
    import ipywidgets

    sent = []
    send = ipywidgets.Widget.send_state

    def record(w, key=None):
        if key is None or len(key):
            sent.append((w, key if key is None or isinstance(key, str) else set(key)))
        return send(w, key)

    monkeypatch.setattr(ipywidgets.Widget, "send_state", record)
    return sent


def test_sensitivity_refine_redraws_send_the_heatmap_and_caption_after_it(cnn, monkeypatch):
    """While a refine scan fills in, a redraw sends the browser the heatmap, the table (one message, whatever its
    size: a table of widget buttons was ~3900 messages on a model with 121 targets, more than the kernel's message
    socket holds when the server falls behind, and the browser lost rows), then the caption ("N/M cells exact"), once:
    never a count the map does not show yet (the heatmap's render takes a while on a large model), nor a caption
    half-built."""
    import ipywidgets

    model, data = cnn
    bench = wb.Workbench(model, data)
    d = dash(bench)
    s = d.tabs["sensitivity"]
    s.redraw_every = 0.0
    sent = _record_updates(monkeypatch)  # every widget update sent to the browser: (widget, keys)
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
    for _, _, updates in frames[:-1]:  # the image, the table's cells (and rows/columns the first time), the caption
        assert [w for w, _ in updates if not isinstance(w, ipywidgets.Layout)] == [s.image, s.table, s.source], updates
        assert "cells" in next(k for w, k in updates if w is s.table)
    # the scan's end redraws the last map: what changed since (the caption's time at least), the caption last
    last = [w for w, _ in frames[-1][2] if not isinstance(w, ipywidgets.Layout)]
    assert last[-1] is s.source and last in (
        [s.source],
        [s.image, s.source],
        [s.table, s.source],
        [s.image, s.table, s.source],
    )
    sens = bench.last_sensitivity
    marked = sum(c[0].startswith("•") for row in s.table.cells for c in row)
    assert sens.exact.all() and marked == sens.exact.size and f"{marked}/{marked} cells exact" in s.source.value


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


def test_a_large_table_is_one_message_whatever_its_size(cnn, monkeypatch):
    """The table of a map with 121 layers x 9 ratios reaches the browser as one message (a grid of widget buttons was
    ~3900 widget openings at once, which the kernel's message socket drops beyond 1000 when the server falls behind);
    redrawing an unchanged map sends nothing for it, a changed one one message."""
    import ipywidgets

    from workbench.analysis.sensitivity import SensitivityResult

    model, data = cnn
    d = dash(wb.Workbench(model, data))
    s = d.tabs["sensitivity"]
    layers = tuple(f"layer{i}" for i in range(121))
    ratios = np.round(np.linspace(0.1, 0.9, 9), 2)

    def result(values):
        return SensitivityResult(layers=layers, members=tuple((n,) for n in layers), ratios=ratios, values=values,
                                 baseline=0.5, metric_name="loss", higher_is_better=False, granularity="weight",
                                 criterion="l1", mode="exact")  # fmt: skip

    updates, opened = _record_updates(monkeypatch), []  # widget updates sent, widgets opened
    open_ = ipywidgets.Widget.open
    monkeypatch.setattr(ipywidgets.Widget, "open", lambda w: (opened.append(w), open_(w))[1])

    def table_updates() -> list:  # the table's updates: their keys
        return [sorted(k) if k is not None else None for w, k in updates if w is s.table]

    rng = np.random.default_rng(0)
    s.refresh(result(rng.normal(size=(121, 9))))
    assert table_updates() == [["cells", "columns", "rows"]] and not opened, (table_updates(), opened[:3])
    assert len(s.table.rows) == 121 and all(len(row) == 9 for row in s.table.cells)
    updates.clear()
    s.refresh(result(s.shown.values.copy()))  # the same values: nothing sent for the table
    assert table_updates() == []
    new = rng.normal(size=(121, 9))
    new[:10] = np.nan  # no value: "—" on grey
    s.refresh(result(new))
    assert table_updates() == [["cells"]]
    assert s.table.cells[20][3][0] == f"{new[20, 3]:+.3f}" and s.table.cells[0][0][:2] == ["—", "#cccccc"]


def test_show_without_the_dashboards_packages_names_the_extra(cnn, monkeypatch):
    """A bench in an environment without anywidget (installed before the table became one): `show()` says which
    package is missing and which extra brings it, rather than failing deep inside an import."""
    import sys

    model, data = cnn
    bench = wb.Workbench(model, data)
    for name in [m for m in sys.modules if m == "workbench.ui" or m.startswith("workbench.ui.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "anywidget", None)  # import anywidget -> ModuleNotFoundError
    with pytest.raises(ModuleNotFoundError, match=r"needs anywidget.*workbench\[ui\]"):
        bench.show()
