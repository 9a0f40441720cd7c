"""ui/effects.py: the Interpretability, Robustness and Bias tabs, driven headlessly and synchronously."""

import pytest
from conftest import assert_bitwise, assert_plain, snapshot

import workbench as wb

pytest.importorskip("ipywidgets")
pytest.importorskip("matplotlib")

SYNC = {"threaded": False, "scheduler": lambda delay, fn: fn()}
TABS = ("interpretability", "robustness", "bias")


@pytest.fixture
def dash():
    model, data = wb.demo.load("digits-cnn")
    bench = wb.Workbench(model, data)
    d = bench.show(new=True, **SYNC)
    d.widget()
    d.tabs["robustness"].samples.value = 64
    d.tabs["robustness"].eps.value = "0, 0.1"
    d.tabs["interpretability"].samples.value = 4
    d.tabs["bias"].curve.value = False
    yield d
    bench.reset()


def test_the_three_tabs_are_registered_and_ask_for_a_step_first(dash):
    assert set(TABS) <= set(dash.tabs)
    titles = [dash._tab.get_title(i) for i in range(len(dash.tabs))]
    assert {"Interpretability", "Robustness", "Bias"} <= set(titles)
    snap = snapshot(dash.bench.model)
    for name in TABS:
        dash.tabs[name].button.click()
        assert "apply a plan first" in dash.log.last and dash.tabs[name].result is None
    assert_bitwise(dash.bench.model, snap)


def test_compute_after_an_apply_draws_real_plots(dash):
    dash.editor.rows["features.3"].slider.value = 0.6
    dash.actions.apply_button.click()
    snap = snapshot(dash.bench.model)
    for name in TABS:
        p = dash.tabs[name]
        dash.select(name)
        p.button.click()
        assert p.result is not None and (p.result.before, p.result.after) == (0, 1), dash.log.last
        assert p.images()[0].value[:4] == b"\x89PNG" and p.images()[0].layout.display == ""
        assert "→" in p.summary.value or "Spearman" in p.summary.value
    assert "Spearman" in dash.tabs["interpretability"].summary.value
    assert_bitwise(dash.bench.model, snap)
    assert_plain(dash.bench.model)


def test_the_visible_tab_recomputes_after_each_change_and_hidden_ones_wait(dash):
    dash.editor.rows["features.3"].slider.value = 0.5
    dash.actions.apply_button.click()
    bias, interp = dash.tabs["bias"], dash.tabs["interpretability"]
    dash.select("interpretability")
    interp.button.click()
    dash.select("bias")
    bias.button.click()
    dash.editor.rows["features.0"].slider.value = 0.5
    dash.actions.apply_button.click()  # bias is on screen: recomputed right after the apply
    assert bias.result.after == 2 and "recomputed" in dash.log.last
    assert interp.result.after == 1  # hidden: not yet
    dash.select("interpretability")
    assert interp.result.after == 2
    bias.compare.value = "dense"
    dash.select("bias")
    dash.actions.undo_button.click()
    assert (bias.result.before, bias.result.after) == (0, 1)
    dash.actions.undo_button.click()
    assert "nothing to compare" in bias.summary.value and bias.image.layout.display == "none"


def test_stop_ends_a_long_attack_and_leaves_the_model_alone(dash):
    dash.editor.rows["features.3"].slider.value = 0.5
    dash.actions.apply_button.click()
    snap = snapshot(dash.bench.model)
    rob = dash.tabs["robustness"]
    rob.attacks.value = ("pgd",)
    ticks = []

    def tick(done, total):
        ticks.append(done)
        if done == 1:
            dash.busy.stop()  # the Stop button, pressed while the attack runs
        type(dash.busy).tick(dash.busy, done, total)

    dash.busy.tick = tick
    rob.button.click()
    assert "stopped" in dash.log.last and rob.result is None and ticks[-1] == 1
    assert dash.bench.store.position == 1
    assert_bitwise(dash.bench.model, snap)
    rob.eps.value = "0, -1"
    del dash.busy.tick
    rob.button.click()
    assert "eps must be >= 0" in dash.log.last
