"""workbench/_bench_moves.py: undo, redo, goto and reset land on the recorded state of each history entry bitwise and
return it; a move that cannot be made says why and changes nothing; edit records a hand edit as one undoable step;
trial comes back. Outside edits, adopt and reset(force=True): tests/reliability/test_outside_edits.py."""

import itertools

import pytest
import torch
from conftest import assert_bitwise, assert_plain, snapshot

import workbench as wb
from workbench.errors import WorkbenchError


def _bench():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    g = torch.Generator().manual_seed(0)
    data = [(torch.randn(32, 8, generator=g), torch.randint(0, 3, (32,), generator=g))]
    return model, wb.Workbench(model, data)


def _three_steps():
    """A bench with three steps applied and the snapshot of each entry (0 = dense)."""
    model, bench = _bench()
    snaps = [snapshot(model)]
    for plan in (wb.Plan.uniform(0.3), wb.Plan.global_(0.6), wb.Plan.uniform(0.5, granularity="neuron")):
        bench.apply(plan, evaluate=False)
        snaps.append(snapshot(model))
    return model, bench, snaps


def test_every_move_lands_on_the_recorded_state_and_returns_its_entry():
    model, bench, snaps = _three_steps()
    for a, b in itertools.permutations(range(4), 2):
        assert bench.goto(a).index == a
        entry = bench.goto(b)
        assert entry == bench.current and entry.index == b == bench.store.position
        assert_bitwise(model, snaps[b])
    bench.goto(2)
    assert bench.undo().index == 1 and bench.redo().index == 2
    assert_bitwise(model, snaps[2])
    assert bench.reset().index == 0 and len(bench.history) == 4  # the steps stay, redoable
    assert_bitwise(model, snaps[0])
    assert_plain(model)


@pytest.mark.parametrize(
    "at, move, match",
    [
        (0, lambda b: b.undo(), "nothing to undo: no pruning step is applied"),
        (3, lambda b: b.redo(), "nothing to redo: no undone step follows the current one"),
        (2, lambda b: b.goto(4), r"history position must be an int in \[0, 3\], got 4"),
        (2, lambda b: b.goto(-1), r"history position must be an int in \[0, 3\], got -1"),
    ],
)
def test_a_move_that_cannot_be_made_says_why_and_changes_nothing(at, move, match):
    model, bench, _ = _three_steps()
    bench.goto(at)
    before, pos = snapshot(model), bench.store.position
    with pytest.raises(WorkbenchError, match=match):
        move(bench)
    assert bench.store.position == pos and len(bench.history) == 4
    assert_bitwise(model, before)


def test_an_edit_is_one_step_undone_bitwise_and_pruned_weights_stay_zero():
    model, bench = _bench()
    bench.apply(wb.Plan.uniform(0.5), evaluate=False)
    pruned, before = bench.store.masks(), snapshot(model)
    with bench.edit("scale") as m, torch.no_grad():
        for p in m.parameters():
            p.add_(1.0)  # also writes the pruned weights: the masks win at the end
    assert bench.current.kind == "edit" and bench.current.label == "scale" and bench.store.position == 2
    assert all((model.get_parameter(n)[mask] == 0).all() for n, mask in pruned.items())
    assert (model[0].bias == before["0.bias"] + 1).all()
    bench.undo()
    assert_bitwise(model, before)


def test_a_trial_comes_back_after_its_steps_and_after_an_error():
    model, bench, snaps = _three_steps()
    bench.goto(1)  # two redoable steps that must survive
    history = list(bench.history)
    with bench.trial() as same:
        assert same is bench
        bench.apply(wb.Plan.global_(0.9), evaluate=False)
        assert len(bench.history) == 3  # the new step replaces the redoable ones inside the trial
    assert list(bench.history) == history and bench.store.position == 1
    assert_bitwise(model, snaps[1])
    with pytest.raises(KeyboardInterrupt), bench.trial():
        bench.goto(3)
        raise KeyboardInterrupt
    assert list(bench.history) == history and bench.store.position == 1
    assert_bitwise(model, snaps[1])
