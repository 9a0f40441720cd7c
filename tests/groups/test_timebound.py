"""groups/timebound.py: time_bound stops a block that runs too long, and nothing is raised after a block that ends."""

from __future__ import annotations

import time

import pytest

from workbench.groups import TraceTimeout, time_bound


def test_time_bound_stops_an_endless_loop():
    t0 = time.perf_counter()
    with pytest.raises(TraceTimeout), time_bound(0.5):
        while True:
            pass
    # the bound is the behaviour under test: the stop comes at the bound, not whenever (10x margin for a busy machine)
    assert time.perf_counter() - t0 < 5
    with time_bound(0.2):  # a block that ends first: nothing is raised later, not even after its bound has passed
        pass
    time.sleep(0.5)


def test_a_stop_landing_in_a_weakref_callback_is_not_reported_as_ignored(monkeypatch):
    import sys
    import weakref

    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)

    class Thing:
        pass

    def slow_callback() -> None:  # runs from C when the object goes: an exception here is "ignored"
        end = time.perf_counter() + 1.5
        while time.perf_counter() < end:
            pass

    thing = Thing()
    weakref.finalize(thing, slow_callback)
    with pytest.raises(TraceTimeout):
        with time_bound(0.3):
            del thing  # the stop is delivered inside the callback first, then again in the loop below
            while True:
                pass
    assert seen == []
    assert sys.unraisablehook == seen.append  # the hook is given back
