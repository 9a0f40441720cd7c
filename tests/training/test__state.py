"""training/_state.py (named test__state.py: tests/test_state.py is workbench/state.py's): a weight swap exchanges
values bitwise and all or nothing, a mask view adds masks and keeps them at zero, and every history state can be
rebuilt from the store's undo data without moving the model."""

import pytest
import torch
from conftest import assert_bitwise, snapshot
from hypothesis import given, settings
from hypothesis import strategies as st
from test_finetune import small_cnn
from torch import nn

import workbench as wb
from workbench.errors import WorkbenchError
from workbench.training import _state
from workbench.training._state import MaskView, WeightSwap, frozen_clone, named_state, state_at

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is fastest and steadiest


def _bits(t):
    return t.reshape(-1).view(torch.uint8)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**16), st.booleans())
def test_a_swap_exchanges_values_bitwise_and_twice_is_nothing(seed, specials):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    start = snapshot(model)
    other = {"0.weight": torch.randn(4, 3), "1.running_mean": torch.randn(4)}
    if specials:  # -0.0 and NaN payloads are values too
        other["0.weight"][0, 0] = -0.0
        other["0.weight"][1, 1] = float("nan")
    swap = WeightSwap({k: v.clone() for k, v in other.items()})
    swap.swap_(model)
    live = named_state(model)
    assert all(torch.equal(_bits(live[k].detach()), _bits(v)) for k, v in other.items())
    assert all(torch.equal(_bits(swap.values[k]), _bits(start[k])) for k in other)  # the swap now holds the old
    assert torch.equal(model[0].bias, start["0.bias"])  # tensors it does not hold are left alone
    swap.swap_(model)
    assert_bitwise(model, start)
    assert swap.nbytes == (12 + 4) * 4 and repr(swap) == "WeightSwap(2 tensors, 0.00 MiB)"


def test_a_swap_is_all_or_nothing(monkeypatch):
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    start = snapshot(model)
    swap = WeightSwap({"0.weight": torch.zeros(4, 3), "0.bias": torch.zeros(4), "1.weight": torch.zeros(2, 4)})
    held = {k: v.clone() for k, v in swap.values.items()}
    calls, real = [], _state.copy_

    def fails_third(dst, src):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("device lost")
        return real(dst, src)

    monkeypatch.setattr(_state, "copy_", fails_third)
    with pytest.raises(RuntimeError, match="device lost"):
        swap.swap_(model)
    assert_bitwise(model, start)  # the two tensors exchanged before the failure were exchanged back
    assert all(torch.equal(swap.values[k], v) for k, v in held.items())
    with pytest.raises(WorkbenchError, match=r"no tensor '9\.weight' that this training step recorded"):
        WeightSwap({"9.weight": torch.zeros(1)}).swap_(model)


def test_tied_tensors_are_named_once():
    model = nn.Sequential(nn.Embedding(5, 3), nn.Linear(3, 5, bias=False))
    model[1].weight = model[0].weight
    assert list(named_state(model)) == ["0.weight"]


def test_a_mask_view_adds_masks_zeroes_only_new_elements_and_enforces_them():
    model = nn.Sequential(nn.Linear(2, 3))
    bench = wb.Workbench(model)
    bench.apply(wb.Plan({"0": wb.LayerPlan(0.5)}), evaluate=False)
    stored = bench.masks["0.weight"].clone()
    view = MaskView(model, bench.store)
    assert torch.equal(view.current("0.weight"), stored) and view.current("0.bias") is None
    extra = ~stored.clone()
    extra[0] = stored[0]  # row 0 only re-flags what the store has
    new = view.add_({"0.weight": stored | extra})
    assert new == int(extra.sum()) - int((extra & stored).sum())
    assert torch.equal(view.current("0.weight"), stored | extra) and (model[0].weight[stored | extra] == 0).all()
    assert view.sparsity(["0.weight"]) == pytest.approx(float((stored | extra).float().mean()))
    assert view.add_({"0.weight": stored}) == 0  # nothing new
    with torch.no_grad():
        model[0].weight.add_(1.0)  # a training step moved every weight
    model[0].weight.grad = torch.ones_like(model[0].weight)
    view.enforce_()
    mask = view.current("0.weight")
    assert (model[0].weight[mask] == 0).all() and (model[0].weight.grad[mask] == 0).all()
    assert (model[0].weight[~mask] != 0).all()


def test_a_frozen_clone_holds_the_given_state_and_cannot_train():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)).train()
    state = {k: torch.zeros_like(v) for k, v in named_state(model).items()}
    clone = frozen_clone(model, state)
    assert not clone.training and all(not p.requires_grad for p in clone.parameters())
    assert clone[0].weight.data_ptr() == state["0.weight"].data_ptr()  # no data copied
    assert model.training and all(p.requires_grad for p in model.parameters())  # the live model is untouched


def test_a_history_index_that_does_not_exist_is_named():
    bench = wb.Workbench(nn.Sequential(nn.Linear(2, 2)))
    for bad in (-1, 1, True, 0.5):
        with pytest.raises(ValueError, match=r"history index must be an int in \[0, 0\]"):
            state_at(bench, bad)


def test_every_history_state_can_be_rebuilt_without_moving_the_model():
    model, data, train = small_cnn()
    bench = wb.Workbench(model, data, train=train)
    states = [snapshot(model)]
    bench.apply(wb.Plan.global_(0.5))
    states.append(snapshot(model))
    bench.finetune(epochs=1, progress=False)
    states.append(snapshot(model))
    bench.apply(wb.Plan.uniform(0.5, granularity="filter", criterion="l1"))
    states.append(snapshot(model))
    bench.goto(1)
    now = snapshot(model)
    for i, expect in enumerate(states):
        got = state_at(bench, i)
        assert all(torch.equal(got[k], v) for k, v in expect.items() if k in got), i
    assert_bitwise(model, now)
