"""workbench/_bench_analyses.py: the Workbench's analysis methods spell out the parameters of the analyses they
call, so help(bench.robustness) shows them."""

import pytest

import workbench as wb


@pytest.mark.parametrize(
    "method, module, fn",
    [
        ("sensitivity", "sensitivity", "sensitivity"),
        ("entropy", "entropy", "entropy"),
        ("profile", "profile", "profile"),
        ("attributions", "attributions", "attributions"),
        ("robustness", "robustness", "robustness"),
        ("bias", "bias", "bias"),
        ("compare_states", "bias", "compare_states"),
    ],
)
def test_facade_methods_spell_out_the_parameters_of_what_they_call(method, module, fn):
    """help(bench.robustness) shows what the analysis takes: the façade's parameters (after self) are the analysis
    function's (after bench), with the same kinds and defaults."""
    import importlib
    import inspect

    def params(f):
        return [(k, v.kind, v.default) for k, v in list(inspect.signature(f).parameters.items())[1:]]

    target = getattr(importlib.import_module(f"workbench.analysis.{module}"), fn)
    assert params(getattr(wb.Workbench, method)) == params(target)


def _bench():
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    g = torch.Generator().manual_seed(0)
    return wb.Workbench(model, [(torch.randn(32, 8, generator=g), torch.randint(0, 3, (32,), generator=g))])


def test_sensitivity_and_allocate_keep_their_last_result_on_the_bench():
    bench = _bench()
    sens = bench.sensitivity((0.5,), progress=False)
    assert bench.last_sensitivity is sens
    a = bench.allocate(0.3, target="params")  # scans again: that scan becomes the last one
    assert bench.last_allocation is a and bench.last_sensitivity is not sens
    assert bench.last_sensitivity.granularity == "weight"
    b = bench.allocate(0.3, target="params", sens=sens)  # a given scan is used, not kept
    assert bench.last_allocation is b and bench.last_sensitivity is not sens


def test_a_bad_budget_is_refused_before_any_scan():
    bench = _bench()
    with pytest.raises(wb.errors.PlanError, match=r"must be in \(0, 1\), got 1\.5"):
        bench.allocate(1.5)
    assert bench.last_sensitivity is None and bench.last_allocation is None


def test_each_analysis_waits_for_the_bench_lock():
    """An analysis never runs while another thread holds the bench (an apply, a training step): it waits."""
    import threading

    bench = _bench()
    started, done = threading.Event(), threading.Event()

    def run():
        started.set()
        bench.connectivity("0")
        done.set()

    with bench.store.lock:
        t = threading.Thread(target=run)
        t.start()
        started.wait(5)
        assert not done.wait(0.3)  # blocked while the lock is held
    t.join(30)
    assert done.is_set()
