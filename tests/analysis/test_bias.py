"""Accuracy, generalization and bias before vs after (workbench/analysis/bias.py)."""

import numpy as np
import pytest
import torch
from conftest import assert_bitwise, assert_plain, snapshot

import workbench as wb
from workbench.analysis.states import StateError

from .conftest import assert_same_state, state_of


@pytest.fixture(scope="module")
def cnn_bias():
    model, data = wb.demo.load("digits-cnn")
    bench = wb.Workbench(model, data)
    bench.apply(wb.Plan.global_(0.7))
    bench.apply(wb.Plan.global_(0.85))
    bench.undo()  # a redo branch that must survive
    gen = data.train.generator.get_state()
    snap = snapshot(model)
    b = bench.bias(plans=(0.3, 0.6, 0.9), classes=data.classes)
    assert_bitwise(model, snap)
    assert_plain(model)
    assert (bench.store.position, len(bench.store.steps)) == (1, 2)
    assert torch.equal(gen, data.train.generator.get_state())  # the training order is not consumed
    yield bench, b
    bench.reset()


def test_per_class_numbers_add_up_to_the_overall_accuracy(cnn_bias):
    bench, b = cnn_bias
    assert b.counts.sum() == 360 and b.confusion_after.sum(1).tolist() == b.counts.tolist()
    for per, overall in ((b.per_class_before, b.accuracy_before), (b.per_class_after, b.accuracy_after)):
        assert float((per * b.counts).sum() / b.counts.sum()) == pytest.approx(overall, abs=1e-12)
    assert b.accuracy_after == pytest.approx(bench.evaluate()["accuracy"], abs=1e-12)
    assert b.accuracy_before == pytest.approx(bench.history[0].metrics["accuracy"], abs=1e-12)
    assert np.allclose(b.per_class_after, bench.evaluate()["per_class"])
    assert (b.confusion_delta.sum(1) == 0).all()
    assert b.delta[b.hurt[0]] == np.nanmin(b.delta)


def test_pruning_identified_exemplars(cnn_bias):
    _, b = cnn_bias
    flipped_right = int(np.sum(np.diag(b.confusion_before))) - int(np.sum(np.diag(b.confusion_after)))
    assert b.forgotten - b.learned == flipped_right
    assert b.n_flipped >= b.forgotten + b.learned and len(b.exemplar_inputs) == min(32, b.n_flipped)
    assert b.exemplar_inputs.shape[1:] == (1, 8, 8)
    assert (b.exemplar_before != b.exemplar_after).all()
    right_to_wrong = (b.exemplar_before == b.exemplar_labels) & (b.exemplar_after != b.exemplar_labels)
    k = int(right_to_wrong.sum())
    assert right_to_wrong[:k].all()  # what pruning forgot comes first


def test_generalization_gap_and_curve(cnn_bias):
    _, b = cnn_bias
    assert 0 <= b.train_before <= 1 and 0 <= b.train_after <= 1
    assert b.gap_before == pytest.approx(b.train_before - b.accuracy_before)
    assert np.all(np.diff(b.curve_sparsity) > 0) and b.curve_sparsity[-1] == pytest.approx(0.9, abs=0.01)
    # shipped weights: overall accuracy 0.992 at 30% sparsity, 0.100 at 90%
    assert np.all(b.curve_worst <= b.curve_overall) and b.curve_overall[-1] < b.curve_overall[0]
    assert len(b.curve_labels) == 3 and set(b.to_dict()) >= {"hurt", "curve_worst", "gap_after"}


def test_bias_on_any_two_entries_and_bad_input(cnn_bias):
    bench, _ = cnn_bias
    snap = snapshot(bench.model)
    b = bench.bias(before=1, after=2, train=None)
    assert (b.before, b.after, b.before_label) == (1, 2, "step 1") and b.curve_sparsity.size == 0
    with pytest.raises(StateError):
        bench.bias(after=3)
    with pytest.raises(wb.errors.WorkbenchError, match="plans"):
        bench.bias(plans=["half"])

    def stop(done, total):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        bench.bias(before=2, after=0, progress=stop)
    assert (bench.store.position, len(bench.store.steps)) == (1, 2)
    assert_bitwise(bench.model, snap)


def test_compare_states_any_two_entries(cnn):
    before = state_of(cnn)
    c = cnn.compare_states(0, -1)  # dense vs the latest entry (undone, still redoable)
    assert (c.a, c.b, c.a_label, c.b_label) == (0, 2, "dense", "step 2")
    assert c.metrics_a["accuracy"] == cnn.history[0].metrics["accuracy"]
    assert c.metrics_b["accuracy"] == cnn.history[2].metrics["accuracy"]
    assert c.sparsity_a == 0 and c.sparsity_b == pytest.approx(0.8, abs=0.01)
    acc_a, acc_b = c.metrics_a["accuracy"], c.metrics_b["accuracy"]
    # right in both: the same prediction; right in one only: different ones (the accuracies are on the same samples)
    assert acc_a + acc_b - 1 - 1e-9 <= c.agreement <= 1 - abs(acc_a - acc_b) + 1e-9, (c.agreement, acc_a, acc_b)
    assert "same prediction" in str(c)
    assert cnn.compare_states(1, 1).agreement == 1.0
    assert_same_state(cnn, before)


@pytest.mark.parametrize("progress", [None, False, True])
def test_progress_takes_what_sensitivity_takes(cnn, progress):
    """False, None or True (a tqdm bar) as for sensitivity (False and True raised "'bool' object is not callable"),
    or a callback that hears 0..total; none of them changes the result."""
    calls = []
    ref = cnn.bias(plans=(0.5,), progress=lambda done, total: calls.append((done, total)))
    b = cnn.bias(plans=(0.5,), progress=progress)
    assert calls == [(i, 5) for i in range(6)]  # val and train in two states, then one plan
    assert np.array_equal(b.confusion_after, ref.confusion_after) and b.curve_worst.tolist() == ref.curve_worst.tolist()
