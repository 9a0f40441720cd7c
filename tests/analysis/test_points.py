"""analysis/_points.py: several ratios per pass (vmap) equal one at a time, and never swap a live module's tensors."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from conftest import assert_bitwise, assert_plain, snapshot
from zoo import make

import workbench as wb


@pytest.mark.parametrize("arch", ["rescat", "mha", "digits-cnn", "digits-resnet"])
def test_batched_points_equal_one_at_a_time_points(arch, monkeypatch):
    from workbench.analysis import _points

    if arch.startswith("digits"):
        model, d = wb.demo.load(arch)
        data = d.calib
    else:
        model, data = make(arch)
    bench = wb.Workbench(model, data, metric="loss")
    snap = snapshot(model)
    ratios = np.linspace(0.1, 0.9, 9)
    ran = []
    real = _points._batched_outputs
    monkeypatch.setattr(_points, "_batched_outputs", lambda *a: ran.append(1) or real(*a))
    one = bench.sensitivity(ratios, engine="suffix", progress=False)
    assert not ran
    many = bench.sensitivity(ratios, engine="batched", progress=False)
    assert ran and "vmap" in many.engine
    np.testing.assert_allclose(many.values, one.values, atol=1e-6, rtol=0)
    assert_bitwise(model, snap)
    assert_plain(model)


def test_batched_points_never_swap_the_live_modules_tensors(monkeypatch):
    """vmap's functional_call swaps a module's tensors for the duration of the call: it must run on a structural
    clone, never on a live module that other points on the thread pool (or any other reader) use meanwhile."""
    import torch.func

    model, d = wb.demo.load("digits-resnet")
    bench = wb.Workbench(model, d.calib, metric="loss")
    live = {id(m) for m in model.modules()}
    on_live, real = [], torch.func.functional_call

    def spy(module, *args, **kwargs):
        if id(module) in live:
            on_live.append(type(module).__name__)
        return real(module, *args, **kwargs)

    monkeypatch.setattr(torch.func, "functional_call", spy)
    with ThreadPoolExecutor(2) as pool:
        many = bench.sensitivity(
            np.linspace(0.1, 0.9, 9), "filter", "l1", engine="batched", executor=pool, progress=False
        )  # coupled rows: members downstream of other members run under vmap through functional_call
    assert "vmap" in many.engine and np.isfinite(many.values).all()
    # the estimate's gradient passes (first order, and per-sample for the Fisher term) run the same way
    est = bench.sensitivity(np.linspace(0.1, 0.9, 9), "filter", "l1", mode="estimate", second_order=True)
    assert np.isfinite(est.values).all()
    assert not on_live, f"functional_call on live modules: {sorted(set(on_live))}"
