"""masks/_writes.py: what a step writes to the tensors is undone bitwise (by `write_back`, and by the journal's
inverses run newest first, as the store does on an error), redone by `prune_again`, and a change already written is
taken as a step without writing anything."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.masks._writes import prune_again, prune_new, taken_as_written, write_back


def _tensor(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(6, 5, generator=g)
    w[0, 0], w[1, 1], w[2, 2] = -0.0, float("nan"), float("inf")  # bitwise: the sign of zero and NaN come back too
    return w


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.int32).clone()


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**16), st.floats(0, 1), st.floats(0, 1))
def test_a_step_on_top_of_another_is_undone_and_redone_bitwise(seed, first, second):
    w = _tensor(seed)
    g = torch.Generator().manual_seed(seed + 1)
    dense = _bits(w)
    current, journal = {}, []
    one = prune_new({"w": w}, {"w": torch.rand(w.shape, generator=g) < first}, current, journal)
    after_one, held = _bits(w), {k: v.clone() for k, v in current.items()}
    two = prune_new({"w": w}, {"w": torch.rand(w.shape, generator=g) < second}, current, journal)
    after_two = _bits(w)
    if "w" in one and "w" in two:
        assert not (one["w"].mask() & two["w"].mask()).any()  # what the first step holds is not recorded again
    write_back({"w": w}.__getitem__, two, current, journal)
    assert torch.equal(_bits(w), after_one) and current.keys() == held.keys()
    assert all(torch.equal(current[k], held[k]) for k in held)
    prune_again({"w": w}.__getitem__, two, current, journal)
    assert torch.equal(_bits(w), after_two)
    for inverse in reversed(journal):  # every write undone newest first: the tensor before the first step
        inverse()
    assert torch.equal(_bits(w), dense)


def test_a_change_already_written_is_taken_as_a_step_without_writing():
    w = _tensor(0)
    dense = w.clone()
    held = torch.zeros(w.shape, dtype=torch.bool)
    held[0] = True  # pruned by an earlier step
    mask = torch.zeros(w.shape, dtype=torch.bool)
    mask[:2] = True  # the change zeroed rows 0 and 1
    before = w[mask].clone()
    with torch.no_grad():
        w[mask] = 0.0
    written = _bits(w)
    current = {"w": held.clone()}
    deltas = taken_as_written({"w": w}.__getitem__, {"w": mask}, {"w": before}, current)
    assert torch.equal(_bits(w), written)  # nothing written
    assert torch.equal(deltas["w"].mask(), mask & ~held) and torch.equal(current["w"], mask)
    assert torch.equal(_bits(deltas["w"].values), _bits(dense[mask & ~held]))  # the earlier step keeps row 0's
