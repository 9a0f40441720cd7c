"""Two threads changing one bench at once get the result of some serial order (the bench's lock serialises them).

The dashboard runs its work on a thread while the user's cell may call the bench; without the lock two applies
interleave their writes and the history no longer matches the weights.
"""

from __future__ import annotations

import threading

import pytest
import torch
from conftest import assert_bitwise, snapshot

import workbench as wb

pytestmark = pytest.mark.usefixtures("one_thread")

PLANS = (wb.Plan.uniform(0.5), wb.Plan.uniform(0.4, granularity="neuron", criterion="l2"))


def make():
    torch.manual_seed(0)
    model = torch.nn.Sequential(*[torch.nn.Linear(256, 256) for _ in range(6)], torch.nn.Linear(256, 4))
    data = [(torch.randn(64, 256), torch.randint(0, 4, (64,)))]
    return model, wb.Workbench(model, data)


def serial(order):
    model, bench = make()
    for i in order:
        bench.apply(PLANS[i])
    return snapshot(model), [e.label for e in bench.history]


@pytest.mark.parametrize("run", range(5))
def test_two_threads_applying_at_once_give_a_serial_result(run):
    outcomes = [serial((0, 1)), serial((1, 0))]
    model, bench = make()
    dense = snapshot(model)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            barrier.wait()
            bench.apply(PLANS[i])
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    labels = [e.label for e in bench.history]
    match = [o for o in outcomes if o[1] == labels]
    assert match, labels
    assert_bitwise(model, match[0][0])
    bench.reset()  # the history is consistent: every move works and is exact
    assert_bitwise(model, dense)
    bench.goto(2)
    assert_bitwise(model, match[0][0])


def test_an_analysis_on_one_thread_and_apply_on_another_do_not_interleave():
    model, bench = make()
    bench.apply(PLANS[0])
    dense_side = snapshot(model)
    seen: list[bool] = []

    def analyse() -> None:
        from workbench.analysis.states import at

        for _ in range(20):
            with at(bench, 0):  # holds the lock while the model is in the dense state
                seen.append(bench.store.position == 0)

    t = threading.Thread(target=analyse)
    t.start()
    for _ in range(5):
        bench.apply(wb.Plan.global_(0.9), evaluate=False)
        bench.undo()
    t.join()
    assert all(seen) and len(seen) == 20
    assert_bitwise(model, dense_side)
