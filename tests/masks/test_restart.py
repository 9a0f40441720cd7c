"""masks/_restart.py: new starting points for a mask store after edits behind its back. `adopt` keeps the weights as
they are and masks exactly what is still zero of what was masked; `force_reset` writes the recorded dense values back
where the store pruned, keeps every other value, and names what no longer fits. Both clear the history. (The bench's
`adopt()` / `reset(force=True)` after real outside edits: tests/reliability/test_outside_edits.py.)"""

import torch
from conftest import assert_bitwise, snapshot
from torch import nn

from workbench.masks import MaskStore


def _pruned():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.Linear(5, 4))
    dense = snapshot(model)
    store = MaskStore(model)
    g = torch.Generator().manual_seed(1)
    store.apply_({"0.weight": torch.rand(5, 6, generator=g) < 0.5})
    store.apply_({"0.weight": torch.rand(5, 6, generator=g) < 0.5, "1.weight": torch.rand(4, 5, generator=g) < 0.5})
    return model, store, dense


def _revive(model, store):
    """Write non-zero values into two masked weights and one kept weight, as an optimizer step would."""
    m = store.masks()["0.weight"]
    revived = m.nonzero()[:2]
    kept = (~m).nonzero()[0]
    with torch.no_grad():
        for i, j in revived.tolist():
            model[0].weight[i, j] = 3.0
        model[0].weight[tuple(kept.tolist())] = 7.0
    return [tuple(r) for r in revived.tolist()], tuple(kept.tolist())


def test_adopt_keeps_the_weights_and_masks_exactly_what_is_still_zero():
    model, store, _ = _pruned()
    held = store.masks()
    revived, _ = _revive(model, store)
    edited = snapshot(model)
    base = store.adopt_()
    assert_bitwise(model, edited)  # nothing written
    assert store.position == 0 and store.steps == ()
    for name, m in held.items():
        still = m & (model.get_parameter(name).detach() == 0)
        assert torch.equal(base[name], still) and torch.equal(store.masks()[name], still), name
    assert all(not base["0.weight"][r] for r in revived)


def test_adopt_with_masks_adds_them_to_what_is_held():
    model, store, _ = _pruned()
    with torch.no_grad():
        model[1].bias.zero_()
    extra = {"1.bias": torch.tensor([True, False, True, False])}
    base = store.adopt_(extra)
    assert torch.equal(base["1.bias"], extra["1.bias"]) and "0.weight" in base


def test_force_reset_writes_the_dense_values_back_where_the_store_pruned_and_keeps_the_rest():
    model, store, dense = _pruned()
    _, kept = _revive(model, store)
    skipped = store.force_reset_()
    expected = {k: v.clone() for k, v in dense.items()}
    expected["0.weight"][kept] = 7.0  # an edit outside the pruned weights stays
    assert skipped == [] and store.position == 0 and store.steps == () and store.masks() == {}
    assert_bitwise(model, expected)


def test_force_reset_names_the_tensors_that_no_longer_fit_and_restores_the_others():
    model, store, dense = _pruned()
    model[1] = nn.Linear(5, 7)  # another shape: the recorded values of 1.weight no longer fit
    skipped = store.force_reset_()
    assert skipped == ["1.weight"]
    assert torch.equal(model[0].weight, dense["0.weight"]) and store.position == 0
