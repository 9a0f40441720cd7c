"""The store's public transactions: `trial` (try steps, come back) and `record_` (record a change already written),
bitwise and all-or-nothing; and the bench's `trial` and `apply_masks(before=...)` on top of them."""

import time

import pytest
import torch
from conftest import assert_bitwise, snapshot
from zoo import make

import workbench as wb
from workbench.errors import WorkbenchError
from workbench.masks import MaskStore
from workbench.training._state import WeightSwap


def _lin():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))


def _mask(p, share=0.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(p.shape, generator=g) < share


def test_trial_returns_to_the_start_with_the_redoable_tail_bitwise():
    model = _lin()
    store = MaskStore(model)
    store.apply_({"0.weight": _mask(model[0].weight, seed=1)})
    store.apply_({"2.weight": _mask(model[2].weight, seed=2)})
    store.undo_()
    tail, at_start = store.steps[1:], snapshot(model)
    with store.trial() as start:
        assert start == 1
        store.apply_({"0.weight": _mask(model[0].weight, seed=3)})  # drops the redoable step inside
        store.apply_({"2.weight": _mask(model[2].weight, seed=4)})
    assert store.position == 1 and store.steps[1:] == tail
    assert_bitwise(model, at_start)
    store.redo_()  # the old tail is redoable again
    assert store.position == 2


def test_trial_comes_back_on_an_error_and_on_ctrl_c():
    model = _lin()
    store = MaskStore(model)
    at_start = snapshot(model)
    for exc in (RuntimeError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(exc)):
            with store.trial():
                store.apply_({"0.weight": _mask(model[0].weight)})
                raise exc
        assert store.position == 0 and not store.steps
        assert_bitwise(model, at_start)


def test_trial_refuses_work_that_replaced_steps_below_its_start():
    model = _lin()
    store = MaskStore(model)
    store.apply_({"0.weight": _mask(model[0].weight)})
    with pytest.raises(WorkbenchError, match="undid below its starting position 1"):
        with store.trial():
            store.undo_()
            store.apply_({"2.weight": _mask(model[2].weight)})


def test_record_of_a_written_step_undoes_and_redoes_bitwise():
    model = _lin()
    store = MaskStore(model)
    store.apply_({"0.weight": _mask(model[0].weight, 0.3, seed=5)})  # already-pruned elements are the first step's
    dense_ish = snapshot(model)
    w0, w2 = model[0].weight, model[2].weight
    cur0 = store.current("0.weight").clone()
    m0, m2 = _mask(w0, seed=6) | cur0, _mask(w2, seed=7)
    before = {"0.weight": w0.detach()[m0].clone(), "2.weight": w2.detach()[m2].clone()}
    swap = WeightSwap({"2.weight": w2.detach().clone()})  # the whole value before: the step also updates 2.weight
    with store.transaction(), torch.no_grad():  # the caller writes once, as the workbench's own change
        w0.masked_fill_(m0, 0.0)
        w2.mul_(1.5).masked_fill_(m2, 0.0)
        after = snapshot(model)
        step = store.record_({"0.weight": m0, "2.weight": m2}, before, {"weights": swap})
    assert step.removed == int((m0 & ~cur0).sum() + m2.sum())  # the first step's elements stay the first step's
    assert_bitwise(model, after)  # nothing written
    store.undo_()
    assert_bitwise(model, dense_ish)
    store.redo_()
    assert_bitwise(model, after)
    store.reset_()
    store.goto_(2)
    assert_bitwise(model, after)


def test_record_validates_before_recording_anything():
    model = _lin()
    store = MaskStore(model)
    w = model[0].weight
    m = _mask(w)
    cases = [
        ({"0.weight": m.float()}, {"0.weight": w.detach()[m]}, "must be a bool tensor"),
        ({"0.weight": m}, {}, "needs the old values"),
        ({"0.weight": m}, {"0.weight": w.detach()[m][:-1]}, "needs the old values"),
        ({"0.weight": m}, {"0.weight": w.detach()[m]}, "non-zero elements where its mask flags them pruned"),
    ]
    at_start = snapshot(model)
    for masks, before, msg in cases:
        with pytest.raises(WorkbenchError, match=msg):
            store.record_(masks, before)
        assert store.position == 0 and not store.steps and not store.masks()
        assert_bitwise(model, at_start)


def test_bench_trial_puts_the_history_and_the_last_results_back():
    model, data = make("rescat")
    bench = wb.Workbench(model, data)
    bench.apply(wb.Plan.uniform(0.3))
    bench.apply(wb.Plan.uniform(0.5))
    bench.undo()
    history, state = bench.history, snapshot(model)
    bench.last_allocation = "kept"
    with pytest.raises(RuntimeError):
        with bench.trial():
            bench.apply(wb.Plan.uniform(0.6, criterion="random"), evaluate=False)
            bench.last_allocation = None
            raise RuntimeError("boom")
    assert bench.history == history and bench.last_allocation == "kept"
    assert_bitwise(model, state)
    bench.redo()
    assert bench.current.label == history[2].label


def test_apply_masks_before_records_without_writing_and_times_from_started():
    model, data = make("rescat")
    bench = wb.Workbench(model, data)
    dense = snapshot(model)
    name = next(n for t in bench.targets for n in t.param_names())
    p = model.get_parameter(name)
    m = _mask(p)
    before = {name: p.detach()[m].clone()}
    with torch.no_grad():
        p.masked_fill_(m, 0.0)
    pruned = snapshot(model)
    started = time.perf_counter() - 100.0  # the step's work began 100 s ago
    entry = bench.apply_masks({name: m}, label="written", before=before, started=started, evaluate=False)
    assert entry.removed == int(m.sum()) and entry.seconds >= 100.0
    assert_bitwise(model, pruned)
    bench.undo()
    assert_bitwise(model, dense)
