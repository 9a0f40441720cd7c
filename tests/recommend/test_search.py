"""recommend/search.py: fine-tuned candidates are measured, searched at a ratio at least the one-shot one."""

import pytest

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is fastest and steadiest


def test_fine_tuning_is_measured_and_recovers_accuracy(latency):
    _, _, rec = latency
    tuned = [r for r in rec.rows if r.finetune_epochs == 1]
    assert tuned and all(r.timing == "+ fine-tune 1 ep" for r in tuned)
    oneshot = {r.name: r for r in rec.rows if r.finetune_epochs == 0}
    # on digits-cnn removing 10% of the filters one-shot costs far more than the budget (shipped weights: 25 points);
    # one epoch recovers accuracy (0.747 -> 0.997 here). Whether it lands within the 1-point budget is decided by
    # the training run: benchmarks/trained_claims.py measures it.
    s = next(r for r in tuned if r.name == "structured-l1")
    assert not oneshot["structured-l1"].meets_budget and s.ratio >= oneshot["structured-l1"].ratio
    assert s.metric > oneshot["structured-l1"].metric
    assert s.meets_budget == (s.drop <= 0.01 + 1e-12)
