"""OWL: outlier ratios and per-block sparsities with mean s."""

from __future__ import annotations

import pytest
import torch

from workbench.errors import PlanError
from workbench.llm import outlier_ratio, owl_ratios, prune_

from .models import MODELS, batches

pytestmark = pytest.mark.usefixtures("one_thread")


def test_outlier_ratio_is_the_share_of_wanda_scores_above_m_times_their_mean():
    torch.manual_seed(0)
    ws = [torch.randn(4, 8), torch.randn(6, 8)]
    sqs = [torch.rand(8, dtype=torch.float64) * torch.tensor([100.0] + [1.0] * 7, dtype=torch.float64)] * 2
    scores = torch.cat([(w.abs() * sq.sqrt().float()).flatten() for w, sq in zip(ws, sqs)])
    expect = float((scores > 3 * scores.mean()).float().mean())
    assert outlier_ratio(ws, sqs, 3.0) == pytest.approx(expect)


@pytest.mark.parametrize("lam", [0.02, 0.08, 0.1])
def test_ratios_keep_the_mean_span_two_lambda_and_fall_as_outliers_rise(lam):
    d = [0.02, 0.05, 0.01, 0.03, 0.04]
    r = owl_ratios(d, 0.6, lam)
    assert sum(r) / len(r) == pytest.approx(0.6)
    assert max(r) - min(r) == pytest.approx(2 * lam)
    order = sorted(range(len(d)), key=d.__getitem__)
    assert [r[i] for i in order] == sorted(r, reverse=True)
    assert owl_ratios([0.03] * 4, 0.6) == [0.6] * 4


def test_ratios_out_of_range_are_an_error_with_the_fix():
    with pytest.raises(PlanError, match=r"outside \[0, 1\).*smaller owl_lambda"):
        owl_ratios([0.0, 1.0], 0.95, 0.1)


def test_owl_prunes_each_block_at_its_own_ratio():
    model = MODELS["llama"](layers=3)
    masks, res = prune_(model, batches(), 0.5, method="wanda", owl=True)
    assert res.outlier_ratios is not None and len(res.block_ratios) == 3
    assert sum(res.block_ratios) / 3 == pytest.approx(0.5)
    for name, mask in masks.items():
        block = int(name.split(".")[2])
        k = int(mask.shape[1] * res.block_ratios[block])
        assert bool((mask.sum(1) == k).all()), name
