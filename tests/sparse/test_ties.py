"""sparse/_ties.py: every name of a tied tensor is found (three modules sharing one is two aliases of the first
name), masks are given under each name, groups that would cut a tied tensor are kept out with a note, and a copy that
split a tied tensor in two is caught."""

import copy
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from workbench.sparse import CompileError
from workbench.sparse._ties import (
    _aliases,
    _by_every_name,
    _check_ties,
    _masks_by_every_name,
    _tied_names,
    _untied_groups,
)


class ThreeWay(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(6, 4)
        self.mid = nn.Linear(4, 6, bias=False)
        self.head = nn.Linear(4, 6, bias=False)
        self.free = nn.Linear(6, 6)
        self.mid.weight = self.emb.weight
        self.head.weight = self.emb.weight


def test_every_further_name_of_a_tied_tensor_points_to_its_first_name():
    model = ThreeWay()
    assert _aliases(model) == {"mid.weight": "emb.weight", "head.weight": "emb.weight"}
    tied = _tied_names(_aliases(model))
    assert tied == {
        "emb.weight": ["mid.weight", "head.weight"],
        "mid.weight": ["emb.weight", "head.weight"],
        "head.weight": ["emb.weight", "mid.weight"],
    }
    params, tied2 = _by_every_name(model)
    assert tied2 == tied and params["head.weight"] is params["emb.weight"] and "free.weight" in params
    assert _aliases(nn.Linear(2, 2)) == {}


def test_masks_are_given_under_every_name_of_the_tensor():
    model = ThreeWay()
    params, tied = _by_every_name(model)
    m = torch.zeros(6, 4, dtype=torch.bool)
    masks = {"emb.weight": m, "free.weight": torch.zeros(6, 6, dtype=torch.bool), "gone.weight": m}
    out = _masks_by_every_name(masks, params, tied)
    assert set(out) == {"emb.weight", "mid.weight", "head.weight", "free.weight"}  # a name not on the model: left out
    assert out["head.weight"] is m and out["mid.weight"] is m
    assert _masks_by_every_name(None, params, tied) is None


def test_groups_that_would_cut_a_tied_tensor_are_kept_out_with_a_note():
    _, tied = _by_every_name(ThreeWay())
    member = lambda p: SimpleNamespace(param=p)  # noqa: E731
    groups = SimpleNamespace(
        groups={
            "a": SimpleNamespace(members=[member("free.weight")]),
            "b": SimpleNamespace(members=[member("head.weight")]),
        }
    )
    notes = []
    keep = _untied_groups({"a": [0, 1], "b": [2]}, groups, tied, notes, "channels")
    assert keep == {"a": [0, 1]}
    assert notes == [
        "channels of group 'b' not removed: they cut 'head.weight', which is tied to 'emb.weight', 'mid.weight'; "
        "the pruned channels stay masked"
    ]


def test_a_copy_that_split_a_tied_tensor_is_caught():
    model = ThreeWay()
    _check_ties(model, copy.deepcopy(model))  # deepcopy keeps one tensor one tensor
    split = copy.deepcopy(model)
    split.head.weight = nn.Parameter(split.emb.weight.detach().clone())
    with pytest.raises(CompileError, match=r"holds 'head\.weight' and 'emb\.weight' as two tensors"):
        _check_ties(model, split)
    shrunk = copy.deepcopy(model)
    del shrunk.head  # a name that is gone is not a split
    _check_ties(model, shrunk)
