"""analysis/_replay.py: the replay engine runs Hugging Face models and models torch.fx cannot trace, equals full
clones, leaves the model bitwise and plain, and refuses to run over its memory bound."""

import numpy as np
import pytest
import torch
from conftest import assert_bitwise, assert_plain, snapshot

import workbench as wb

from .conftest import RATIOS


class _Branchy(torch.nn.Module):
    """Data-dependent control flow (fx cannot trace it) and keyword inputs."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = torch.nn.Linear(6, 12), torch.nn.Linear(12, 12), torch.nn.Linear(12, 3)

    def forward(self, x, scale=None):
        h = torch.relu(self.a(x))
        if h.sum() > 0:  # a branch on a value
            h = torch.relu(self.b(h)) + h
        return self.c(h * (1.0 if scale is None else scale))


def test_replay_engine_runs_hf_models_and_untraceable_ones_and_equals_full_clones():
    import transformers as T

    torch.manual_seed(0)
    cfg = T.BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=32, num_labels=3)  # fmt: skip
    bert = T.BertForSequenceClassification(cfg).eval()
    g = torch.Generator().manual_seed(0)
    text = [{"input_ids": (ids := torch.randint(0, 100, (4, 12), generator=g)), "attention_mask": torch.ones_like(ids),
             "labels": torch.randint(0, 3, (4,), generator=g)} for _ in range(2)]  # fmt: skip
    branchy = _Branchy().eval()
    kw = [({"x": torch.randn(8, 6, generator=g), "scale": torch.full((8, 1), 0.5)}, torch.randint(0, 3, (8,), generator=g))
          for _ in range(2)]  # fmt: skip
    for model, data in ((bert, text), (branchy, kw)):
        bench = wb.Workbench(model, data, metric="loss")
        snap = snapshot(model)
        a = bench.sensitivity(RATIOS, engine="replay", progress=False)
        b = bench.sensitivity(RATIOS, engine="full", progress=False)
        c = bench.sensitivity(RATIOS, progress=False)  # "auto": replay where it measured faster, else full
        assert a.engine.startswith("replay") and "clones" in b.engine
        np.testing.assert_allclose(c.values, b.values, atol=1e-6, rtol=0)
        np.testing.assert_allclose(a.values, b.values, atol=1e-6, rtol=0)
        assert a.baseline == pytest.approx(b.baseline, abs=1e-6)  # replayed from the latest row checked
        assert_bitwise(model, snap)
        assert_plain(model)
    # over its memory bound the runner refuses (the scan then runs full forwards)
    from workbench.analysis._replay import ReplayRunner

    with pytest.raises(MemoryError, match="exceed"):
        ReplayRunner(bert, text, [("bert.encoder.layer.1.output.dense",)], max_bytes=16)


def test_a_replayed_point_leaves_no_module_for_the_garbage_collector():
    """Each point's clone is freed by reference counting (its replayed calls' overrides dropped): a cycle per point
    would leave thousands of objects per point to full collections, which stop every thread (the dashboard's too)."""
    import gc

    from workbench.analysis._points import PointEvaluator
    from workbench.analysis._rows import rows_for
    from workbench.evaluate import eval_mode

    torch.manual_seed(0)
    model = _Branchy().eval()
    g = torch.Generator().manual_seed(0)
    data = [({"x": torch.randn(8, 6, generator=g)}, torch.randint(0, 3, (8,), generator=g)) for _ in range(2)]
    bench = wb.Workbench(model, data, metric="loss")
    rows = rows_for(bench, "weight", "l1")
    with eval_mode(model):
        ev = PointEvaluator(bench, rows, RATIOS, data, "loss", "replay")
        ev.point(2, 0)
        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            for i in range(len(rows)):
                ev.point(i, len(RATIOS) - 1)
            gc.collect()
            left = [o for o in gc.garbage if isinstance(o, torch.nn.Module)]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
    assert ev.engine.startswith("replay")
    assert left == [], f"{len(left)} modules left to the garbage collector"


def _small_bert():
    import transformers as T

    torch.manual_seed(0)
    cfg = T.BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
                       intermediate_size=32, num_labels=3)  # fmt: skip
    g = torch.Generator().manual_seed(0)
    text = [{"input_ids": (ids := torch.randint(0, 100, (4, 12), generator=g)), "attention_mask": torch.ones_like(ids),
             "labels": torch.randint(0, 3, (4,), generator=g)} for _ in range(2)]  # fmt: skip
    return T.BertForSequenceClassification(cfg).eval(), text


def test_rows_are_checked_when_first_used_and_a_row_whose_replay_differs_replays_nothing():
    """The runner checks a sample of rows up front (for its speed-up) and every other row when a point first uses
    it (an estimate's trust check touches 8 rows of hundreds); a row whose replay does not give the dense outputs
    replays nothing, so its points are full forwards (here: the dense outputs it checks against made wrong)."""
    from workbench.analysis._replay import SPEED_SAMPLE, ReplayRunner
    from workbench.analysis._rows import rows_for

    model, data = _small_bert()
    bench = wb.Workbench(model, data, metric="loss")
    rows = rows_for(bench, "weight", "l1")
    runner = ReplayRunner(model, data, [r.members for r in rows])
    starts = sorted({runner._first_start(r.members) for r in rows} - {-1})
    assert len(starts) > SPEED_SAMPLE + 2 and runner.checked < set(starts) and len(runner.checked) == SPEED_SAMPLE
    # a caller that names the rows it measures first (an estimate's trust cells) gets its speed sample among them:
    # those rows' checks are then done
    picked = [1, 4, 6, len(rows) - 1, 8, 10]
    hinted = ReplayRunner(model, data, [r.members for r in rows], first=picked)
    assert (
        hinted.checked <= {hinted._first_start(rows[i].members) for i in picked} and len(hinted.checked) == SPEED_SAMPLE
    )
    late = max(set(starts) - runner.checked)
    runner._want = runner._want + 1.0  # what the next row checked will be compared with: no replay matches it
    row = next(r for r in rows if runner._first_start(r.members) == late)
    params = {m + ".weight": torch.zeros_like(model.get_parameter(m + ".weight")) for m in row.members}
    with torch.inference_mode():
        got = [out.logits.clone() for out, _, _ in runner.outputs(params)]
        want = [model(**{k: v for k, v in b.items() if k != "labels"}).logits for b in data]
    assert late in runner.checked and late in runner.bad and not runner._replayable(late)
    for g_, w_ in zip(got, want):  # not the dense outputs: the zeroed weights took effect (a full forward ran)
        assert not torch.allclose(g_, w_)
    from workbench.analysis._graph import clone_with

    with torch.inference_mode():
        full = [clone_with(model, params).eval()(**{k: v for k, v in b.items() if k != "labels"}).logits for b in data]
    for g_, f_ in zip(got, full):
        torch.testing.assert_close(g_, f_, rtol=0, atol=1e-6)


def test_over_its_memory_bound_the_runner_keeps_shallower_calls_and_still_equals_full_forwards():
    """Keeping every row's outermost earlier calls (the blocks before it and the parts of its own block before it)
    can exceed the bound on long inputs; the runner then drops the deepest calls first (a row re-runs the part of its
    block before it) rather than refusing, and every row still gives the full forward's outputs."""
    from workbench.analysis._graph import clone_with
    from workbench.analysis._replay import ReplayRunner, _ancestors, _tensors
    from workbench.analysis._rows import rows_for

    model, data = _small_bert()
    rows = [r.members for r in rows_for(wb.Workbench(model, data, metric="loss"), "weight", "l1")]
    full = ReplayRunner(model, data, rows)
    used = sum(t.nbytes for batch in full.cache for out in batch.values() for t in _tensors(out))
    tight = ReplayRunner(model, data, rows, max_bytes=used // 2)

    def deepest(r):
        return max(sum(1 for _ in _ancestors(c, r.parent)) for c in r.keep)

    assert tight.keep < full.keep and deepest(tight) < deepest(full)
    for members in rows[::3]:
        params = {m + ".weight": torch.zeros_like(model.get_parameter(m + ".weight")) for m in members}
        with torch.inference_mode():
            got = [out.logits.clone() for out, _, _ in tight.outputs(params)]
            want = [clone_with(model, params).eval()(**{k: v for k, v in b.items() if k != "labels"}).logits
                    for b in data]  # fmt: skip
        for g_, w_ in zip(got, want):
            torch.testing.assert_close(g_, w_, rtol=0, atol=1e-6)
    with pytest.raises(MemoryError, match="exceed"):
        ReplayRunner(model, data, rows, max_bytes=16)


class _Counted(torch.nn.Module):
    """Counts its forward calls (on every structural clone: the count is the class's)."""

    calls = 0

    def forward(self, x):
        type(self).calls += 1
        return x * 2.0


class _InPlaceResidual(torch.nn.Module):
    """`h = a(x); h += b(x)`: the output of the call `a` changes after it returned."""

    def __init__(self):
        super().__init__()
        self.e, self.a, self.b, self.c = _Counted(), torch.nn.Linear(6, 6), torch.nn.Linear(6, 6), torch.nn.Linear(6, 3)

    def forward(self, x):
        x = self.e(x)
        h = self.a(x)
        h += self.b(x)
        return self.c(h)


def test_a_call_whose_output_changes_in_place_later_is_not_replayed_and_the_rest_of_the_row_still_is(monkeypatch):
    """The order pass holds every call's output of the first batch (what the record stores, so that batch runs once
    while the runner is built) and sees `a`'s output change after `a` returned: `a` is re-run (a stored copy would
    hold a + b), `e` before it is still replayed, and the row of `b` reproduces the model (before, its check failed
    and nothing was replayed there)."""
    from workbench.analysis import _replay
    from workbench.analysis._graph import clone_with

    monkeypatch.setattr(_replay, "HOOKED_TIMING", 0.0)  # the order pass stands for a full forward, however short,
    monkeypatch.setattr(_replay, "CLEAR_SPEEDUP", 0.0)  # and is not timed again (the count below is then exact)
    torch.manual_seed(0)
    model = _InPlaceResidual().eval()
    g = torch.Generator().manual_seed(0)
    data = [(torch.randn(8, 6, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(3)]
    _Counted.calls = 0
    runner = _replay.ReplayRunner(model, data, [("a",), ("b",), ("c",)])
    assert _Counted.calls == len(data)  # the order pass (first batch) and the record of the two others: no more
    assert ("a", 0) in runner.unsafe and ("e", 0) in runner.keep
    start_b = runner._first_start(["b"])
    params = {"b.weight": torch.zeros(6, 6)}
    _Counted.calls = 0
    with torch.inference_mode():
        got = [out.clone() for out, _, _ in runner.outputs(params)]
        assert _Counted.calls == 0  # e replayed in the row's check and on every batch
        want = [clone_with(model, params).eval()(x) for x, _ in data]
    assert start_b in runner.checked and start_b not in runner.bad
    for g_, w_ in zip(got, want):
        torch.testing.assert_close(g_, w_, rtol=0, atol=1e-6)


def test_auto_does_not_build_the_replay_engine_for_a_model_whose_forward_takes_milliseconds(monkeypatch):
    """On small models a point's fixed costs match what replay saves: `engine="auto"` stops after the order pass
    (one forward of the first batch) when it is under `REPLAY_MIN_SECONDS` and runs full forwards (the same
    values); an explicit `engine="replay"` still builds it."""
    from workbench.analysis import _points
    from workbench.analysis._replay import ReplayRunner, TooSmall
    from workbench.analysis._rows import rows_for
    from workbench.evaluate import eval_mode

    model, data = _small_bert()
    bench = wb.Workbench(model, data, metric="loss")
    rows = rows_for(bench, "weight", "l1")
    with pytest.raises(TooSmall, match="ms"):
        ReplayRunner(model, data, [r.members for r in rows], min_seconds=60.0)
    monkeypatch.setattr(_points, "REPLAY_MIN_SECONDS", 60.0)
    with eval_mode(model):
        auto = _points.PointEvaluator(bench, rows, RATIOS, data, "loss", "auto")
        forced = _points.PointEvaluator(bench, rows, RATIOS, data, "loss", "replay")
        assert auto.runner is None and forced.engine.startswith("replay")
        for i in (0, len(rows) // 2, len(rows) - 1):
            assert auto.point(i, 2) == pytest.approx(forced.point(i, 2), abs=1e-6)
