"""recommend/plans.py: plans of the allocated strategy keep every layer alive."""

import pytest

import workbench as wb
from workbench.recommend import recommend

from .conftest import cnn

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is fastest and steadiest


def test_sensitivity_allocated_weights_do_not_strip_layers():
    # its allocation came from first-order Taylor estimates alone, which predicted loss drops for whole conv
    # layers of the trained CNN: the candidate fell to chance accuracy (9.7%) at 10-20% of the weights
    model, data = cnn()
    bench = wb.Workbench(model, data.val, train=data.train)  # as in the README's quick start: estimates on data.val
    rec = recommend(bench, "latency", 0.01, strategies=["allocated-weight"], repeats=1)
    row = rec.rows[0]
    # was 9.7% accuracy: an 89-point drop; shipped weights: 30% at a 0.8-point drop
    assert row.ratio >= 0.1 and row.drop < 0.05, (row.ratio, row.metric)
