"""masks/_edits.py: how the mask store tells an edit made behind its back from its own: each kind of edit is named,
the error lists them with the ways out, and a recorded change is checked before it is believed."""

import weakref
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from workbench.errors import OutsideEditError, WorkbenchError
from workbench.masks._edits import changes, check_written, edit_error, tracked
from workbench.masks._packed import Step, _fingerprint


def _seen(tensors):
    return {n: (weakref.ref(t), _fingerprint(t)) for n, t in tensors.items()}


def test_nothing_moved_is_no_change_and_each_kind_of_edit_is_named():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    seen = _seen(dict(model.named_parameters()))
    assert changes(seen, dict(model.named_parameters())) == {}
    with torch.no_grad():
        model[0].weight.mul_(2)  # an optimizer step, an in-place edit
    model[0].bias.data = torch.zeros(4)  # new data, same shape
    model[1].weight.data = torch.zeros(2, 5)  # new shape
    model[1].bias = nn.Parameter(torch.zeros(2))  # another parameter
    now = dict(model.named_parameters())
    got = changes(seen, now)
    assert got["0.weight"].startswith("was modified in place (version")
    assert got["0.bias"] == "got new data (its .data was replaced)"
    assert got["1.weight"] == "changed shape from (2, 4) to (2, 5)"
    assert got["1.bias"] == "was replaced by another tensor (a layer or parameter was swapped)"
    del now["0.bias"]
    assert changes(seen, now)["0.bias"].startswith("is no longer on the model")
    model2 = nn.Linear(3, 4)
    seen2 = _seen({"w": model2.weight})
    model2.double()
    assert changes(seen2, {"w": model2.weight}) == {
        "w": "was converted from torch.float32 on cpu to torch.float64 on cpu"
    }


def test_the_error_names_at_most_six_edits_and_the_ways_out():
    edits = {f"{i}.weight": "was modified in place" for i in range(8)}
    err = edit_error(edits)
    assert isinstance(err, OutsideEditError) and err.edits == edits
    msg = str(err)
    assert msg.startswith("8 tensor(s) changed outside the workbench")
    assert "'5.weight'" in msg and "'6.weight'" not in msg and "(and 2 more)" in msg
    assert "bench.adopt()" in msg and "bench.reset(force=True)" in msg and "bench.edit()" in msg
    assert "more)" not in str(edit_error({"a": "x"}))


def test_a_recorded_change_must_be_written_and_carry_the_old_values():
    p = torch.tensor([0.0, 2.0, 0.0, 4.0])
    mask = torch.tensor([True, False, True, False])
    check_written("w", p, mask, torch.tensor([1.0, 3.0]))  # zero where flagged, one old value per flagged element
    with pytest.raises(WorkbenchError, match=r"old values of the 2 flagged elements of 'w'.*got nothing"):
        check_written("w", p, mask, None)
    with pytest.raises(WorkbenchError, match=r"got 3 values"):
        check_written("w", p, mask, torch.ones(3))
    with pytest.raises(WorkbenchError, match=r"'w' has non-zero elements where its mask flags them.*apply_"):
        check_written("w", torch.ones(4), mask, torch.ones(2))


def test_tracked_tensors_are_the_parameters_and_the_buffers_a_step_swaps():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))

    swap = SimpleNamespace(values={"1.running_mean": None, "0.weight": None, "no.such": None})  # a WeightSwap's names
    out = tracked(model, [Step({}, {"weights": swap}), Step({})])
    assert set(out) == {n for n, _ in model.named_parameters()} | {"1.running_mean"}
    assert out["1.running_mean"] is model[1].running_mean and out["0.weight"] is model[0].weight
