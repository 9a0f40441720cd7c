"""analysis/states.py: states as transactions: `at` visits an entry and restores bitwise, keeping the redo branch
(also on errors and interrupts), refuses outside edits, and names the entries that exist."""

import pytest
import torch

from workbench.analysis.states import StateError, at, default_pair, resolve
from workbench.errors import OutsideEditError

from .conftest import assert_same_state, state_of


def test_at_visits_a_state_and_restores_bitwise_keeping_the_redo_branch(cnn):
    before = state_of(cnn)
    dense = cnn.history[0].metrics["accuracy"]
    for i in (0, 2, -1):
        with at(cnn, i) as j:
            assert cnn.store.position == j == resolve(cnn, i)
            if j == 0:
                assert cnn.evaluate()["accuracy"] == dense
        assert_same_state(cnn, before)


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_at_restores_on_error_and_interrupt(cnn, error):
    before = state_of(cnn)
    with pytest.raises(error):
        with at(cnn, 2):
            assert cnn.store.position == 2
            raise error("midway")
    assert_same_state(cnn, before)


def test_at_refuses_weights_edited_outside_the_store_and_changes_nothing(cnn):
    with torch.no_grad():  # a pruned weight revived by hand (e.g. training without enforce)
        name, mask = next(iter(cnn.store.masks().items()))
        cnn.model.get_parameter(name)[tuple(mask.nonzero()[0].tolist())] = 0.125
    before = state_of(cnn)
    with pytest.raises(OutsideEditError, match=name.replace(".", r"\.")), at(cnn, 0):
        pass
    assert_same_state(cnn, before)
    cnn.reset(force=True)  # the way out that writes the recorded dense values back: the edit was on a pruned weight


def test_history_indices_that_do_not_exist(cnn):
    for bad in (3, -4, 99):
        with pytest.raises(StateError, match=r"entries 0\.\.2"):
            resolve(cnn, bad)
    with pytest.raises(StateError, match="does not exist"):
        cnn.attributions("saliency", samples=2, before=5)
    with pytest.raises(StateError, match="does not exist"):
        cnn.compare_states(0, 7)
    assert default_pair(cnn) == (0, 1)
    cnn.reset()
    with pytest.raises(StateError, match="Apply a plan first"):
        cnn.robustness()
