"""analysis/_stream.py: a monitor's reference is 'dense' (entry 0), a history index, or a module; names other than
'dense' and indices without a bench are errors that say what to pass; stream batches are bare inputs or pairs."""

import pytest
import torch
from torch import nn

import workbench as wb
from workbench.analysis._stream import _pairs, _reference_index, _shape_of
from workbench.analysis.states import StateError
from workbench.errors import WorkbenchError


def test_references_resolve_to_a_history_index_or_to_none_for_a_module():
    bench = wb.Workbench(nn.Sequential(nn.Linear(3, 2)), [(torch.randn(4, 3), torch.zeros(4, dtype=torch.long))])
    bench.apply(wb.Plan.uniform(0.5))
    assert (
        _reference_index(bench, "dense") == 0 and _reference_index(bench, 1) == 1 and _reference_index(bench, -1) == 1
    )
    assert _reference_index(bench, nn.Linear(3, 2)) is None and _reference_index(bench, True) is None
    with pytest.raises(WorkbenchError, match=r"must be 'dense' \(history entry 0\), got 'original'"):
        _reference_index(bench, "original")
    with pytest.raises(WorkbenchError, match=r"reference=0 names a history entry, which needs a Workbench"):
        _reference_index(None, "dense")
    with pytest.raises(StateError, match="does not exist"):
        _reference_index(bench, 5)


def test_stream_batches_are_bare_inputs_or_pairs():
    x, y = torch.zeros(2, 3), torch.tensor([0, 1])
    got = list(_pairs([x, (x, y), {"x": x, "y": y}]))
    assert got[0][0] is x and got[0][1] is None
    assert got[1][0] is x and got[1][1] is y and got[2][1] is y
    assert _shape_of(x) == (3,) and _shape_of({"input_ids": x}) is None
