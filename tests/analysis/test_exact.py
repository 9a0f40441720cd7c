"""analysis/_exact.py: an exact scan stopped by Ctrl-C returns the partial map (NaN where not computed) and a point
that fails is an AnalysisError naming it, carrying the partial result; the model stays bitwise unchanged."""

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from conftest import assert_bitwise, assert_plain, snapshot
from zoo import make

import workbench as wb
from workbench.analysis.sensitivity import AnalysisError, SensitivityResult

from .conftest import RATIOS


def test_interrupting_returns_the_partial_result_and_the_model_is_unchanged():
    model, data = make("rescat")
    bench = wb.Workbench(model, data)
    snap = snapshot(model)

    def stop(done, total):
        if done == 5:
            raise KeyboardInterrupt

    with pytest.warns(UserWarning, match="interrupted"):
        s = bench.sensitivity(RATIOS, progress=stop, executor=ThreadPoolExecutor(1))
    assert not s.complete and np.isnan(s.values).any() and (~np.isnan(s.values)).sum() >= 5
    assert_bitwise(model, snap)
    assert_plain(model)


def test_metric_returning_nan_names_the_point_and_keeps_the_partial_result():
    model, data = make("rescat")
    calls = []

    def flaky(m, d):
        calls.append(1)
        return math.nan if len(calls) > 3 else 0.5

    bench = wb.Workbench(model, data, metric=flaky)
    snap = snapshot(model)
    with pytest.raises(AnalysisError, match=r"returned nan for layer '.+' at ratio") as e:
        bench.sensitivity(RATIOS, executor=ThreadPoolExecutor(1), progress=False)
    assert isinstance(e.value.partial, SensitivityResult)
    assert_bitwise(model, snap)
