"""Shared by the tests of workbench/analysis/: the demo CNN with a redo branch, a check that a state is kept, the
ratios of the small scans and an exact scan in loss units."""

import pytest
from conftest import assert_bitwise, assert_plain, snapshot

import workbench as wb


@pytest.fixture
def cnn(demo_models):
    """The demo CNN with two steps applied and the second undone (a redo branch); reset afterwards."""
    model, data = demo_models["digits-cnn"]
    dense = snapshot(model)
    bench = wb.Workbench(model, data)
    bench.apply(wb.Plan.uniform(0.5))
    bench.apply(wb.Plan.global_(0.8))
    bench.undo()
    yield bench
    bench.reset()
    assert_bitwise(model, dense)


def state_of(bench):
    return bench.store.position, len(bench.store.steps), len(bench.history), snapshot(bench.model)


def assert_same_state(bench, before):
    pos, steps, hist, snap = before
    assert (bench.store.position, len(bench.store.steps), len(bench.history)) == (pos, steps, hist)
    assert_bitwise(bench.model, snap)
    assert_plain(bench.model)


RATIOS = (0.2, 0.5, 0.8)


def _exact_loss(bench, ratios, **kw):
    return bench.sensitivity(ratios, metric="loss", progress=False, **kw)
