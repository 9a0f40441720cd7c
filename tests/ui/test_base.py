"""The panel base (workbench/ui/_base.py): work asked for while another task runs is deferred once and run inside
that task's worker as it ends, with its message, a Stop or an error in the log."""

import types

import pytest

pytest.importorskip("ipywidgets")

from workbench.ui._base import Busy, Log, Panel


class Counting(Panel):
    title = "Counting"

    def __init__(self, dashboard, outcome=None):
        super().__init__(dashboard)
        self.outcome, self.runs, self.inside = outcome, [], []

    def now(self) -> None:
        self.runs.append("now")

    def rerun(self) -> str:
        self.inside.append(self.busy.running)
        if self.outcome is not None:
            raise self.outcome("boom")
        self.runs.append("deferred")
        return "counting: recomputed"


def _dashboard():
    log = Log()
    return types.SimpleNamespace(bench=None, log=log, busy=Busy(log, threaded=False))


def test_idle_runs_now_busy_runs_once_inside_the_task_as_it_ends():
    d = _dashboard()
    p = Counting(d)
    p.run_or_defer(p.now)
    assert p.runs == ["now"] and not p._pending

    def task():
        p.run_or_defer(p.now)  # asked twice while the task runs: one deferred run
        p.run_or_defer(p.now)
        assert p._pending

    d.busy.run("other", task)
    assert p.runs == ["now", "deferred"] and p.inside == [True] and not p._pending
    assert d.log.lines[-2][1].startswith("other: done") and d.log.last == "counting: recomputed"  # as it ended
    d.busy.run("again", lambda: None)  # nothing pending: nothing runs
    assert p.runs == ["now", "deferred"]


@pytest.mark.parametrize(("error", "level", "text"), [
    (RuntimeError, "error", "Counting: RuntimeError: boom"),
    (KeyboardInterrupt, "warn", "Counting: stopped"),
])  # fmt: skip
def test_a_failing_deferred_run_lands_in_the_log(error, level, text):
    d = _dashboard()
    p = Counting(d, outcome=error)
    d.busy.run("other", lambda: p.run_or_defer(p.now))
    assert (level, text) in d.log.lines and not d.busy.running and not p._pending


def test_a_panel_without_deferred_work_adds_nothing_to_the_runner():
    d = _dashboard()
    Panel(d)
    assert d.busy.on_idle == [] and len(Counting(d).busy.on_idle) == 1


def test_a_task_runs_with_the_objects_before_it_left_out_of_garbage_collections():
    """A full collection stops every thread (a slider's too): while a task runs, what existed before it is frozen
    (gc.freeze) and collections scan only what it creates; unfrozen when it ends, also on an error; nested blocks
    count; a freeze made by someone else is left alone."""
    import gc

    from workbench.ui._base import frozen_gc

    d = _dashboard()
    seen = []

    def task():
        seen.append(gc.get_freeze_count() > 0)
        with frozen_gc():  # nested: the outer block's freeze holds
            seen.append(gc.get_freeze_count() > 0)
        seen.append(gc.get_freeze_count() > 0)
        raise RuntimeError("boom")

    assert gc.get_freeze_count() == 0
    d.busy.run("task", task)
    assert seen == [True, True, True] and gc.get_freeze_count() == 0  # unfrozen after the error
    assert "boom" in d.log.last
    gc.freeze()  # the user's own freeze: neither undone nor counted
    try:
        frozen = gc.get_freeze_count()
        with frozen_gc():
            assert gc.get_freeze_count() == frozen
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()


def test_a_rendered_figure_leaves_no_garbage_for_a_full_collection():
    """A matplotlib figure is thousands of objects in reference cycles: `render_png` frees them with one young
    collection, so none is left for the full collections that stop every thread (a heatmap of 100 rows left ~13k
    before); automatic collections are on again after it, and stay off for a user who turned them off."""
    import gc

    import numpy as np
    from matplotlib.markers import MarkerStyle

    from workbench.ui._base import render_png

    def heatmap(ax):
        ax.imshow(np.arange(300.0).reshape(100, 3))
        ax.set_yticks(range(100), [f"layer {i}" for i in range(100)])

    def markers() -> int:  # tick marks: each in a cycle with its own bound method
        return sum(isinstance(o, MarkerStyle) for o in gc.get_objects())

    render_png(heatmap)  # matplotlib's caches (fonts, colour maps) filled once
    gc.collect()
    before = markers()
    assert render_png(heatmap)[:4] == b"\x89PNG"
    assert markers() == before and gc.isenabled()
    gc.disable()
    try:
        render_png(heatmap)
        assert not gc.isenabled()
    finally:
        gc.enable()
