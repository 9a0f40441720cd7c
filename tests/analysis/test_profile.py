"""analysis/profile.py: per-layer FLOPs (as torch counts them), activation bytes and latency, dense and effective."""

import numpy as np
import pytest
from conftest import assert_bitwise, assert_plain, snapshot
from zoo import make

import workbench as wb
from workbench.errors import DataError


def test_profile_counts_flops_with_torch_and_measures_latency():
    from torch.utils.flop_counter import FlopCounterMode

    model, data = make("rescat")
    bench = wb.Workbench(model, data)
    snap = snapshot(model)
    prof = bench.profile(batch_size=16, repeats=3)
    x = bench.example_inputs.repeat(8, 1, 1, 1)
    with FlopCounterMode(display=False) as fc:
        model(x)
    assert prof.total_flops_dense == fc.get_total_flops()
    i = prof.layers.index("a")
    assert prof.flops_dense[i] == 2 * 16 * 8 * 8 * 8 * 8 * 9  # 2 * batch * out_hw * cout * cin * k*k
    assert prof.activation_bytes[i] == 16 * 8 * 8 * 8 * 4
    assert np.all(prof.latency_ms[~np.isnan(prof.latency_ms)] > 0) and prof.total_latency_ms > 0
    bench.apply(wb.Plan.uniform(0.5))
    pruned = bench.profile(batch_size=16, repeats=3)
    assert pruned.flops_effective[i] == pytest.approx(prof.flops_dense[i] * pruned.nonzeros[i] / pruned.params[i])
    assert pruned.total_flops_effective < pruned.total_flops_dense == prof.total_flops_dense
    assert "MFLOPs" in str(pruned)
    bench.reset()
    assert_bitwise(model, snap)
    assert_plain(model)
    with pytest.raises(DataError):
        bench.profile(batch_size=0)
