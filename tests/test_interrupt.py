"""_interrupt.py: Ctrl-C inside a deferred block lets the block finish, then raises; nested blocks raise once, after
the outermost; the previous handler comes back; other threads are left alone; `settle` finishes its clean-up
through interrupts and raises afterwards. (A real SIGINT at random moments of apply/undo: tests/reliability.)"""

import signal
import threading

import pytest

from workbench._interrupt import deferred_interrupt, settle


def test_a_sigint_in_the_block_lets_it_finish_then_raises_and_the_handler_comes_back():
    before = signal.getsignal(signal.SIGINT)
    done = []
    with pytest.raises(KeyboardInterrupt):
        with deferred_interrupt():
            signal.raise_signal(signal.SIGINT)
            done.append("after the signal")  # the second of two writes still happens
    assert done == ["after the signal"]
    assert signal.getsignal(signal.SIGINT) is before
    with deferred_interrupt():  # no signal: nothing raised
        done.append("quiet")
    assert signal.getsignal(signal.SIGINT) is before


def test_nested_blocks_raise_once_after_the_outermost():
    steps = []
    with pytest.raises(KeyboardInterrupt):
        with deferred_interrupt():
            with deferred_interrupt():
                signal.raise_signal(signal.SIGINT)
                steps.append("inner done")
            steps.append("outer done")  # the inner block did not raise
    assert steps == ["inner done", "outer done"]


def test_other_threads_run_the_block_as_it_is():
    seen = []

    def work():
        with deferred_interrupt():
            seen.append(signal.getsignal(signal.SIGINT))

    before = signal.getsignal(signal.SIGINT)
    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert seen == [before]  # no handler was installed from the thread


def test_settle_finishes_through_interrupts_and_raises_afterwards():
    state = {"n": 0}

    def step():
        state["n"] += 1
        if state["n"] in (1, 3):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        settle(lambda: state["n"] >= 4, step)
    assert state["n"] == 4
    settle(lambda: state["n"] >= 6, lambda: state.update(n=state["n"] + 1))  # no interrupt: no raise
    assert state["n"] == 6
    settle(lambda: True, lambda: pytest.fail("done already: no step"))
