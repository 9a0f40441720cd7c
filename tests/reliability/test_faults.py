"""Fault injection at every write of every state change: the model ends exactly before or exactly after.

The mask store writes tensors through three primitives: `zero_` (prune), `scatter_` (put values back) and the
`copy_` of a training step's weight swap. Each test counts the writes an operation makes, then re-runs it once
per write k with the k-th write raising (KeyboardInterrupt, RuntimeError, MemoryError): afterwards the model must be
bitwise what it was before the call, the history unchanged, and the next operations must work and reach the states
they reach without a fault.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from conftest import assert_bitwise, assert_plain, snapshot

import workbench as wb
from workbench.masks import _writes
from workbench.training import _state

pytestmark = pytest.mark.usefixtures("one_thread")

ERRORS = (KeyboardInterrupt, RuntimeError, MemoryError)


class Faults:
    """Counts the store's writes; with `fail_at=k` the k-th write raises `error` (before writing anything)."""

    def __init__(self, monkeypatch):
        self.calls = 0
        self.fail_at: int | None = None
        self.error: type[BaseException] = RuntimeError
        for mod, name in ((_writes, "zero_"), (_writes, "scatter_"), (_state, "copy_")):  # where the store writes
            monkeypatch.setattr(mod, name, self._wrap(getattr(mod, name)))

    def _wrap(self, fn):
        def write(*args, **kwargs):
            self.calls += 1
            if self.calls == self.fail_at:
                raise self.error(f"injected fault at write {self.calls}")
            return fn(*args, **kwargs)

        return write

    @contextlib.contextmanager
    def failing(self, k: int | None, error: type[BaseException] = RuntimeError):
        self.calls, self.fail_at, self.error = 0, k, error
        try:
            yield
        finally:
            self.fail_at = None

    def count(self, op) -> int:
        with self.failing(None):
            op()
        return self.calls


def make_bench(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(12, 32), torch.nn.ReLU(), torch.nn.Linear(32, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4)
    )
    g = torch.Generator().manual_seed(seed)
    data = [(torch.randn(32, 12, generator=g), torch.randint(0, 4, (32,), generator=g)) for _ in range(2)]
    return model, wb.Workbench(model, data, train=data)


def history_of(bench):
    return bench.store.position, len(bench.store.steps), [(e.index, e.label, e.kind) for e in bench.history]


def prepared(kind: str):
    """A bench with three steps (prune, fine-tune with a weight swap, prune) and each state's snapshot."""
    model, bench = make_bench()
    states = [snapshot(model)]
    bench.apply(wb.Plan.uniform(0.3), evaluate=False)
    states.append(snapshot(model))
    bench.finetune(epochs=1, progress=False)
    states.append(snapshot(model))
    bench.apply(wb.Plan.uniform(0.5, granularity="neuron"), evaluate=False)
    states.append(snapshot(model))
    if kind == "redo":
        bench.goto(0)
    return model, bench, states


OPS = {
    "apply": (lambda b: b.apply(wb.Plan.global_(0.95), evaluate=False), "prune"),
    "apply+evaluate": (lambda b: b.apply(wb.Plan.global_(0.95)), "prune"),
    "undo": (lambda b: b.undo(), None),
    "redo": (lambda b: b.redo(), None),
    "goto": (lambda b: b.goto(1), None),
    "reset": (lambda b: b.reset(), None),
}


@pytest.mark.parametrize("op", list(OPS))
def test_a_fault_at_any_write_leaves_the_model_exactly_before(monkeypatch, op):
    faults = Faults(monkeypatch)
    fn, _ = OPS[op]
    model, bench, states = prepared(op)
    before_hist, before = history_of(bench), snapshot(model)
    n = faults.count(lambda: fn(bench))  # the fault-free run: how many writes, and the state it reaches
    after, after_hist = snapshot(model), history_of(bench)
    assert n >= 2, f"{op} made {n} writes"
    for k in range(1, n + 1):
        for error in ERRORS:
            model, bench, states = prepared(op)
            with faults.failing(k, error), pytest.raises(error):
                fn(bench)
            assert_bitwise(model, before)
            assert history_of(bench) == before_hist, (op, k, error)
            assert_plain(model)
            fn(bench)  # the same call again, fault-free, reaches the same state as the first fault-free run
            assert_bitwise(model, after)
            assert history_of(bench) == after_hist
            bench.goto(0)  # and every state stays reachable exactly
            assert_bitwise(model, states[0])


def test_a_fault_while_a_finetune_is_recorded_leaves_the_state_before_training(monkeypatch):
    faults = Faults(monkeypatch)

    def pruned():
        model, bench = make_bench()
        bench.apply(wb.Plan.uniform(0.4), evaluate=False)
        return model, bench

    model, bench = pruned()
    before, hist = snapshot(model), history_of(bench)
    n = faults.count(lambda: bench.finetune(epochs=1, progress=False))
    trained = snapshot(model)
    assert n >= 2
    for k in range(1, n + 1):
        for error in ERRORS:
            model, bench = pruned()
            with faults.failing(k, error), pytest.raises(error):
                bench.finetune(epochs=1, progress=False)
            assert_bitwise(model, before)
            assert history_of(bench) == hist, (k, error)
            bench.finetune(epochs=1, progress=False)  # the same training (same seed) from the same state
            assert_bitwise(model, trained)
            bench.undo()
            assert_bitwise(model, before)


def test_an_error_inside_training_puts_every_tensor_back(monkeypatch):
    model, bench = make_bench()
    bench.apply(wb.Plan.uniform(0.4), evaluate=False)
    before, hist = snapshot(model), history_of(bench)
    calls = {"n": 0}
    real = torch.optim.AdamW.step

    def step(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise MemoryError("injected: out of memory in the optimizer")
        return real(self, *a, **k)

    monkeypatch.setattr(torch.optim.AdamW, "step", step)
    with pytest.raises(MemoryError):
        bench.finetune(epochs=1, progress=False)
    assert_bitwise(model, before)
    assert history_of(bench) == hist
    bench.undo()


def test_an_interrupted_evaluation_after_apply_drops_the_whole_step(monkeypatch):
    model, bench = make_bench()
    bench.apply(wb.Plan.uniform(0.3))
    before, hist = snapshot(model), history_of(bench)

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(wb.State, "evaluate", interrupted)  # what the history evaluates with
    with pytest.raises(KeyboardInterrupt):
        bench.apply(wb.Plan.global_(0.8))
    assert_bitwise(model, before)
    assert history_of(bench) == hist
    monkeypatch.undo()
    bench.undo()
    assert bench.store.position == 0
