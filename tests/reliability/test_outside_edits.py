"""Weights changed outside the workbench are detected, never blended into undo; each case has an exact way out.

Also: re-attaching a Workbench to a model another bench has pruned warns and says how to get the original weights
back, and a model that arrives already sparse is reported as such, not as dense.
"""

from __future__ import annotations

import pytest
import torch
from conftest import assert_bitwise, assert_plain, snapshot

import workbench as wb
from workbench.errors import OutsideEditError, WorkbenchWarning

pytestmark = pytest.mark.usefixtures("one_thread")


def make():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)
    )
    data = [(torch.randn(32, 8), torch.randint(0, 3, (32,)))]
    bench = wb.Workbench(model, data, train=data)
    dense = snapshot(model)
    bench.apply(wb.Plan.uniform(0.5))
    bench.apply(wb.Plan.global_(0.8))
    return model, bench, dense


def optimizer_step(model):
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(4, 8), torch.randint(0, 3, (4,))
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()


def swap_layer(model):
    model[2] = torch.nn.Linear(16, 16)


EDITS = {
    "optimizer step": (optimizer_step, ("0.weight", "modified in place")),
    "model.double()": (lambda m: m.double(), ("0.weight", "converted from torch.float32")),
    "layer swapped": (swap_layer, ("2.weight", "replaced by another tensor")),
    "load_state_dict": (lambda m: m.load_state_dict(m.state_dict()), ("4.bias", "modified in place")),
}


@pytest.mark.parametrize("edit", list(EDITS))
@pytest.mark.parametrize("move", ["undo", "redo", "reset", "goto", "apply", "finetune", "compare_states"])
def test_an_outside_edit_is_refused_by_every_move_and_nothing_changes(edit, move):
    model, bench, _ = make()
    if move == "redo":
        bench.undo()
    fn, (name, why) = EDITS[edit]
    fn(model)
    edited, pos, steps = snapshot(model), bench.store.position, len(bench.store.steps)
    call = {
        "undo": bench.undo,
        "redo": bench.redo,
        "reset": bench.reset,
        "goto": lambda: bench.goto(0),
        "apply": lambda: bench.apply(wb.Plan.global_(0.9)),
        "finetune": lambda: bench.finetune(epochs=1, progress=False),
        "compare_states": lambda: bench.compare_states(0, -1),
    }[move]
    with pytest.raises(OutsideEditError) as err:
        call()
    msg = str(err.value)
    assert repr(name) in msg and why in msg, msg
    assert "bench.adopt()" in msg and "reset(force=True)" in msg and "bench.edit()" in msg
    assert name in err.value.edits
    assert_bitwise(model, edited)
    assert (bench.store.position, len(bench.store.steps)) == (pos, steps)
    assert_plain(model)


def test_adopt_keeps_the_edited_weights_as_the_new_start_and_masks_what_is_still_zero():
    model, bench, _ = make()
    optimizer_step(model)  # revives pruned weights too (their gradients are not zero)
    edited = snapshot(model)
    entry = bench.adopt()
    assert entry.index == 0 and bench.store.position == 0 and len(bench.history) == 1
    assert_bitwise(model, edited)
    for name, mask in bench.masks.items():  # every still-masked weight is exactly zero
        assert not model.get_parameter(name).detach()[mask].any()
    bench.apply(wb.Plan.global_(0.9))  # the bench works from here, with exact undo back to the adopted state
    bench.undo()
    assert_bitwise(model, edited)


def test_reset_force_writes_the_recorded_dense_values_back_where_the_workbench_pruned():
    model, bench, dense = make()
    masks = bench.masks
    with torch.no_grad():  # revive one pruned weight and change one that was never pruned
        name, mask = next(iter(masks.items()))
        p = model.get_parameter(name)
        pruned_at = tuple(mask.nonzero()[0].tolist())
        kept_at = tuple((~mask).nonzero()[0].tolist())
        p[pruned_at] = 5.0
        p[kept_at] = 7.0
    bench.reset(force=True)
    expected = {k: v.clone() for k, v in dense.items()}
    expected[name][kept_at] = 7.0  # the edit outside the pruned weights is kept, the pruned one is dense again
    assert_bitwise(model, expected)
    assert bench.store.position == 0 and len(bench.store.steps) == 0 and not bench.masks


def test_reset_force_after_a_layer_swap_names_what_it_left_alone():
    model, bench, _ = make()
    model[2] = torch.nn.Linear(16, 32)  # another shape: the recorded values no longer fit
    model[4] = torch.nn.Linear(32, 3)
    with pytest.warns(WorkbenchWarning, match="'2.weight'"):
        bench.reset(force=True)
    assert bench.store.position == 0


def test_edit_records_a_hand_edit_as_an_exactly_undoable_step():
    model, bench, _ = make()
    before = snapshot(model)
    with bench.edit("bias +1") as m, torch.no_grad():
        m[0].bias.add_(1.0)
        m[4].weight.mul_(2.0)
    after = snapshot(model)
    assert bench.current.kind == "edit" and bench.current.label == "bias +1"
    for name, mask in bench.masks.items():  # pruned weights stayed zero
        assert not model.get_parameter(name).detach()[mask].any()
    bench.undo()
    assert_bitwise(model, before)
    bench.redo()
    assert_bitwise(model, after)


def test_an_error_inside_edit_puts_everything_back():
    model, bench, _ = make()
    before, steps = snapshot(model), len(bench.store.steps)
    with pytest.raises(ValueError), bench.edit() as m:
        with torch.no_grad():
            m[0].weight.fill_(3.0)
        raise ValueError("changed my mind")
    assert_bitwise(model, before)
    assert len(bench.store.steps) == steps
    bench.undo()  # no outside edit is left behind


def test_edits_on_the_dense_state_before_any_step_are_taken_as_they_are():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    data = [(torch.randn(32, 8), torch.randint(0, 3, (32,)))]
    bench = wb.Workbench(model, data)
    bench.evaluate()
    optimizer_step(model)  # nothing recorded yet: nothing to blend
    edited, loss = snapshot(model), wb.evaluate(model, data)["loss"]
    bench.apply(wb.Plan.uniform(0.5))
    assert bench.history[0].metrics["loss"] == loss  # the dense metrics were measured again, on the edited model
    bench.undo()
    assert_bitwise(model, edited)


def test_a_second_workbench_on_a_pruned_model_warns_and_says_how_to_get_the_first_back():
    model, bench, dense = make()
    with pytest.warns(WorkbenchWarning, match=r"already has a Workbench with 2 pruning step.*Workbench\.of\(model\)"):
        second = wb.Workbench(model, [(torch.randn(8, 8), torch.randint(0, 3, (8,)))])
    assert wb.Workbench.of(model) is bench
    assert second.history[0].label.startswith("start (")  # not called dense
    bench.reset()
    assert_bitwise(model, dense)


def test_a_model_that_arrives_sparse_is_reported_as_sparse_not_dense():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(40, 40), torch.nn.ReLU(), torch.nn.Linear(40, 3))
    with torch.no_grad():
        for m in (model[0], model[2]):
            w = m.weight
            w[w.abs() < w.abs().flatten().kthvalue(int(0.8 * w.numel())).values] = 0.0
    data = [(torch.randn(16, 40), torch.randint(0, 3, (16,)))]
    with pytest.warns(WorkbenchWarning, match="already had 8[0-9]% of its target weights at zero"):
        bench = wb.Workbench(model, data)
    assert 0.79 < bench.start_sparsity < 0.81
    assert bench.history[0].label == f"start ({bench.start_sparsity:.0%} zeros)"
    text = str(bench.report())
    assert "arrived with 80% of its target weights at zero" in text and "dense" not in text.split("\n")[-1]
