"""analysis/_points.py: several ratios per pass equal one at a time (folded into the batch, under vmap per node, or
the whole suffix under vmap) and never swap a live module's tensors; engine="auto" batches only where that timed
faster and keeps vmap's warnings to itself."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from conftest import assert_bitwise, assert_plain, snapshot
from zoo import make

import workbench as wb


@pytest.mark.parametrize("arch", ["rescat", "mha", "digits-cnn", "digits-resnet", "digits-lstm", "digits-transformer"])
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
    assert ran and "batched" in many.engine
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
    assert "batched" in many.engine and np.isfinite(many.values).all()
    # the estimate's gradient passes (first order, and per-sample for the Fisher term) run the same way
    est = bench.sensitivity(np.linspace(0.1, 0.9, 9), "filter", "l1", mode="estimate", second_order=True)
    assert np.isfinite(est.values).all()
    assert not on_live, f"functional_call on live modules: {sorted(set(on_live))}"


def _counting(monkeypatch, delay=0.0, fail=False):
    """Wraps `_batched_outputs`: counts its calls, optionally slows it down or makes it fail."""
    import time

    from workbench.analysis import _points

    calls, real = [], _points._batched_outputs

    def wrapped(*a):
        calls.append(len(a[1]))
        if fail:
            raise RuntimeError("no batching rule")
        time.sleep(delay)
        return real(*a)

    monkeypatch.setattr(_points, "_batched_outputs", wrapped)
    return calls


def test_auto_batches_a_rows_ratios_where_that_measured_faster(monkeypatch):
    """engine="auto" times two points one at a time on the first row, then one batched pass over the next ratios,
    and batches the other rows if that was faster per point. One-point passes slowed down (20 ms each): batched."""
    import time

    from workbench.analysis import _points

    model, data = make("rescat")
    bench = wb.Workbench(model, data, metric="loss")
    snap = snapshot(model)
    ratios = np.linspace(0.1, 0.9, 9)
    one = bench.sensitivity(ratios, engine="suffix", progress=False)
    calls = _counting(monkeypatch)
    real = _points.PointEvaluator.point
    monkeypatch.setattr(_points.PointEvaluator, "point", lambda self, i, j: time.sleep(0.02) or real(self, i, j))
    got = bench.sensitivity(ratios, engine="auto", progress=False)
    assert "batched" in got.engine
    # the timed pass (two of the first row's nine ratios went one at a time), then passes of at most five ratios
    # (`CPU_VARIANTS`): the first row's last two, the other rows' 5 + 4
    assert calls[0] == 5 and sorted(calls[1:]) == sorted([2] + [5, 4] * (len(one.layers) - 1))
    np.testing.assert_allclose(got.values, one.values, atol=1e-6, rtol=0)
    assert_bitwise(model, snap)


def test_auto_keeps_one_point_per_pass_where_batching_is_slower_or_fails(monkeypatch):
    """A batched pass slowed down (0.5 s): timed once, then one point per pass, bitwise the suffix engine's values.
    A batched pass that fails (an op without a batching rule): tried once, never again in the scan."""
    model, data = make("rescat")
    bench = wb.Workbench(model, data, metric="loss")
    ratios = np.linspace(0.1, 0.9, 9)
    one = bench.sensitivity(ratios, engine="suffix", progress=False)
    for slow in (dict(delay=0.5), dict(fail=True)):
        with monkeypatch.context() as m:
            calls = _counting(m, **slow)
            got = bench.sensitivity(ratios, engine="auto", progress=False)
        assert calls == [5] and "batched" not in got.engine
        np.testing.assert_array_equal(got.values[1:], one.values[1:])
        np.testing.assert_allclose(got.values, one.values, atol=1e-6, rtol=0)
    # refine measures cells in its own order: auto does not group them into batched passes to time them
    with monkeypatch.context() as m:
        calls = _counting(m)
        bench.sensitivity(ratios, mode="refine", budget=0.5, progress=False)
    assert calls == []


def test_auto_keeps_vmaps_no_batching_rule_warning_to_itself():
    """The demo transformer's attention has no vmap batching rule (vmap loops over the variants and warns of a
    performance drop): engine="auto" times that pass and keeps it only where faster, so the user sees no warning;
    torch's switch is back on afterwards (the user's own vmap still warns)."""
    import warnings

    import torch
    from torch.func import vmap

    model, d = wb.demo.load("digits-transformer")
    bench = wb.Workbench(model, d.calib, metric="loss")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        bench.sensitivity(np.linspace(0.1, 0.9, 9), progress=False)
        assert not [w for w in seen if "batching rule" in str(w.message)]
        q = torch.randn(3, 1, 2, 4, 8)
        vmap(torch.nn.functional.scaled_dot_product_attention)(q, q, q)
        assert [w for w in seen if "batching rule" in str(w.message)]


def test_batched_passes_fold_the_variants_into_the_batch_and_fall_back_to_vmap(monkeypatch):
    """A batched pass runs convolutions, batch norms (eval), pooling and elementwise ops on the variants folded into
    the batch (the same per-sample computation, without vmap's per-op cost: on digits-resnet every value equals the
    one-point pass's bitwise); other nodes under a vmap of their own; where a node defeats that, the whole suffix
    under one vmap (same values to 1e-6)."""
    from torch import nn

    from workbench.analysis import _points

    model, d = wb.demo.load("digits-resnet")
    bench = wb.Workbench(model, d.calib, metric="loss")
    ratios = np.linspace(0.1, 0.9, 9)
    one = bench.sensitivity(ratios, engine="suffix", progress=False)
    own_vmap, real = [], _points._vmapped
    monkeypatch.setattr(_points, "_vmapped", lambda node, *a: own_vmap.append(node) or real(node, *a))
    many = bench.sensitivity(ratios, engine="batched", progress=False)
    np.testing.assert_array_equal(many.values, one.values)
    folded = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Linear)
    assert not [n for n in own_vmap if n.op == "call_module" and type(model.get_submodule(n.target)) in folded]

    def refuse(*a):
        raise RuntimeError("cannot tell")

    monkeypatch.setattr(_points, "_on_variants", refuse)
    whole = bench.sensitivity(ratios, engine="batched", progress=False)
    assert "batched" in whole.engine
    np.testing.assert_allclose(whole.values, one.values, atol=1e-6, rtol=0)


def test_batched_passes_take_tensor_attributes_per_variant():
    """`y.T` is an attribute read like `y.shape`, but its value differs per variant: it must not be read off the first
    variant as a shape is (it runs under vmap instead)."""
    import torch
    from torch import nn

    class T(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(6, 4), nn.Linear(4, 4)

        def forward(self, x):
            y = self.a(x)
            return self.b(y) + y.T.mean(1)

    torch.manual_seed(0)
    data = [(torch.randn(16, 6), torch.randint(0, 4, (16,))) for _ in range(2)]
    bench = wb.Workbench(T().eval(), data, metric="loss")
    ratios = np.linspace(0.1, 0.9, 9)
    one = bench.sensitivity(ratios, engine="suffix", progress=False)
    many = bench.sensitivity(ratios, engine="batched", progress=False)
    np.testing.assert_allclose(many.values, one.values, atol=1e-6, rtol=0)
