"""evaluate.py: evaluating the live model gives the accuracy, loss and per-class accuracy computed by hand, in eval
mode without gradients, leaving every parameter and every module's train flag as they were; metrics carry their
direction; one-shot iterators and data on another device are refused with the fix."""

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_bitwise, snapshot
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import workbench as wb
from workbench.errors import DataError
from workbench.evaluate import Metric, check_metric, eval_mode, higher_is_better, reiterable, to_device


def _model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Dropout(0.5), nn.ReLU(), nn.Linear(8, 4))
    model.train()
    model[3].eval()  # a mix of flags, each to be kept
    return model


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(1, 7), min_size=1, max_size=4), st.integers(0, 2**16))
def test_accuracy_loss_and_per_class_equal_the_hand_computed_ones(sizes, seed):
    model = _model()
    g = torch.Generator().manual_seed(seed)
    data = [(torch.randn(n, 5, generator=g), torch.randint(0, 3, (n,), generator=g)) for n in sizes]  # class 3 absent
    snap, flags = snapshot(model), [m.training for m in model.modules()]
    res = wb.evaluate(model, data)
    assert_bitwise(model, snap)
    assert [m.training for m in model.modules()] == flags
    x, y = torch.cat([b[0] for b in data]), torch.cat([b[1] for b in data])
    with torch.no_grad(), eval_mode(model):
        logits = model(x)
    pred = logits.argmax(1)
    assert res["n"] == len(y) and res["metric_name"] == "accuracy"
    assert res["accuracy"] == pytest.approx(float((pred == y).float().mean())) and res["metric"] == res["accuracy"]
    assert res["loss"] == pytest.approx(float(F.cross_entropy(logits, y)), rel=1e-5)
    for c in range(3):
        if (y == c).any():
            assert res["per_class"][c] == pytest.approx(float((pred[y == c] == c).float().mean()))
    assert math.isnan(res["per_class"][3])  # no sample of class 3: not a zero


def test_metric_loss_and_a_callable_metric_run_in_eval_mode():
    model = _model()
    data = [(torch.randn(6, 5), torch.randint(0, 4, (6,)))]
    assert wb.evaluate(model, data, "loss")["metric"] == wb.evaluate(model, data)["loss"]
    seen = []

    def fraction_of_positive_logits(m, d):
        seen.append([mod.training for mod in m.modules()])
        return 0.25

    res = wb.evaluate(model, data, fraction_of_positive_logits)
    assert res["metric"] == 0.25 and res["metric_name"] == "fraction_of_positive_logits"
    assert seen == [[False] * len(list(model.modules()))]
    assert model.training and not model[3].training


def test_a_metric_carries_its_direction():
    mae = Metric(lambda m, d: 0.5, higher_is_better=False, name="mae")
    assert mae(None, None) == 0.5 and repr(mae) == "Metric('mae', higher_is_better=False)"
    assert [higher_is_better(m) for m in ("accuracy", "loss", "perplexity", mae, len)] == [
        True,
        False,
        False,
        False,
        True,
    ]
    with pytest.raises(DataError, match="needs a callable"):
        Metric(0.5, higher_is_better=True)
    with pytest.raises(DataError, match="must be True or False, got 1"):
        Metric(len, higher_is_better=1)
    with pytest.raises(DataError, match=r"metric must be one of \('accuracy', 'loss', 'perplexity'\).*got 'f1'"):
        check_metric("f1")
    with pytest.warns(wb.WorkbenchWarning, match=r"'len' is taken as higher-is-better.*wb\.Metric\(len"):
        check_metric(len, warn=True)


def test_one_shot_iterators_are_refused_and_reiterable_data_is_not():
    batch = (torch.zeros(1, 5), torch.zeros(1, dtype=torch.long))
    for ok in ([batch], (batch,), None, torch.utils.data.DataLoader([batch])):
        reiterable(ok)
    with pytest.raises(DataError, match=r"calib is a one-shot iterator \(generator\).*list\(\.\.\.\)"):
        reiterable((b for b in [batch]), "calib")
    with pytest.raises(DataError, match=r"data is a one-shot iterator \(list_iterator\)"):
        reiterable(iter([batch]))
    with pytest.raises(DataError, match=r"must be an iterable of batches .* got int"):
        reiterable(3)


def test_eval_mode_restores_each_flag_also_on_error():
    model = _model()
    flags = [m.training for m in model.modules()]
    with pytest.raises(RuntimeError, match="midway"):
        with eval_mode(model):
            assert not any(m.training for m in model.modules())
            raise RuntimeError("midway")
    assert [m.training for m in model.modules()] == flags


def test_batches_follow_the_model_dtype_but_integers_keep_theirs():
    x = {"ids": torch.arange(3), "feats": [torch.zeros(2), (torch.ones(1, dtype=torch.float64),)]}
    out = to_device(x, torch.device("cpu"), dtype=torch.bfloat16)
    assert out["ids"].dtype == torch.int64 and out["feats"][0].dtype == torch.bfloat16
    assert isinstance(out["feats"][1], tuple) and out["feats"][1][0].dtype == torch.bfloat16
    same = torch.zeros(2)
    assert to_device(same, torch.device("cpu")) is same  # nothing to move: not copied
    with pytest.raises(DataError, match=r"batch 0 inputs is on meta but the model is on cpu.*model\.to\('meta'\)"):
        to_device(torch.zeros(2, device="meta"), torch.device("cpu"), "batch 0 inputs")
