"""The one latency timer (workbench/sparse/timing.py): what it calls, in which order, and what it returns. No claim
about how fast anything is."""

import math

import pytest
import torch

from workbench.sparse.timing import CLOCKS, measure, median_ms, samples


def _counting(log: list, name: str):
    def fn():
        log.append(name)

    return fn


@pytest.mark.parametrize("clock", CLOCKS)
def test_single_calls_are_warmed_up_sized_then_interleaved_round_by_round(clock):
    log: list[str] = []
    got = samples({"a": _counting(log, "a"), "b": _counting(log, "b")}, repeats=4, min_block_s=0, clock=clock)
    assert list(got) == ["a", "b"] and all(len(v) == 4 for v in got.values())
    assert all(math.isfinite(v) and v >= 0 for vs in got.values() for v in vs)
    warm = ["a"] * 3 + ["b"] * 3  # two warm-up calls and one sizing block of one call each
    assert log == warm + ["a", "b"] * 4


def test_blocks_grow_until_max_calls_and_every_reading_is_per_call():
    log: list[str] = []
    got = samples({"a": _counting(log, "a")}, repeats=2, min_block_s=60.0, max_calls=8, warmup=1, grow="double")
    assert len(log) == 1 + (1 + 2 + 4 + 8) + 2 * 8  # warm-up, sizing blocks 1, 2, 4, 8 (capped), two rounds of 8
    assert len(got["a"]) == 2


def test_before_runs_untimed_ahead_of_every_block_of_its_callable():
    log: list[str] = []
    samples({"a": _counting(log, "a")}, repeats=2, min_block_s=0, before={"a": _counting(log, "setup")})
    assert log == ["setup", "a", "a", "a", "setup", "a", "setup", "a"]


def test_measure_is_the_median_of_the_samples_and_median_ms_times_one_callable(monkeypatch):
    from workbench.sparse import timing

    asked = []

    def fake_samples(fns, **options):  # readings that do not depend on the machine
        asked.append((list(fns), options))
        return {k: [3.0, 1.0, 2.0 + i] for i, k in enumerate(fns)}

    monkeypatch.setattr(timing, "samples", fake_samples)
    assert measure({"x": lambda: None, "y": lambda: None}, repeats=3, min_block_s=0) == {"x": 2.0, "y": 3.0}
    assert median_ms(lambda: None, 5) == 2.0
    assert asked[-1] == (["fn"], {"repeats": 5, "min_block_s": 0.0, "device": None, "clock": "wall"})


def test_cpu_clock_restores_the_thread_count_and_bad_options_are_refused():
    threads = torch.get_num_threads()
    samples({"a": lambda: None}, repeats=1, min_block_s=0, clock="cpu")
    assert torch.get_num_threads() == threads
    with pytest.raises(ValueError, match="clock must be one of"):
        samples({"a": lambda: None}, clock="gpu")
    with pytest.raises(ValueError, match="grow must be"):
        samples({"a": lambda: None}, grow="triple")
