"""groups/types.py: a channel group's masks flag exactly its members' slices of the pruned root channels, and its
channels through grouped blocks are each unit's channel in every block."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.groups import ChannelGroup
from workbench.groups.types import GroupAnalysis, Member


def _group(size: int) -> ChannelGroup:
    # a conv's filters (dim 0), its bias, the next layer's inputs (dim 1), and an index that is not the identity
    rev = torch.arange(size).flip(0)
    return ChannelGroup(
        "g",
        size,
        ("conv",),
        (
            Member("conv.weight", 0, torch.arange(size), torch.arange(size), producer=True),
            Member("conv.bias", 0, torch.arange(size), torch.arange(size)),
            Member("next.weight", 1, rev, torch.arange(size)),
        ),
    )


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 8).flatmap(lambda n: st.tuples(st.just(n), st.lists(st.booleans(), min_size=n, max_size=n))))
def test_masks_flag_exactly_the_members_slices_of_the_pruned_channels(case):
    n, flags = case
    g = _group(n)
    pruned = torch.tensor(flags, dtype=torch.bool)
    shapes = {"conv.weight": torch.Size([n, 3, 2, 2]), "conv.bias": torch.Size([n]), "next.weight": torch.Size([5, n])}
    masks = g.masks(pruned, shapes)
    if not pruned.any():
        assert masks == {}  # nothing pruned: no mask at all
        return
    assert set(masks) == set(shapes)
    assert torch.equal(masks["conv.weight"], pruned[:, None, None, None].expand(n, 3, 2, 2))
    assert torch.equal(masks["conv.bias"], pruned)
    assert torch.equal(masks["next.weight"], pruned.flip(0)[None, :].expand(5, n))  # through the reversed index
    assert all(m.shape == shapes[k] and m.dtype == torch.bool for k, m in masks.items())


def test_a_group_is_supported_unless_it_says_why_and_channels_repeat_over_blocks():
    g = _group(3)
    assert g.supported and not ChannelGroup("h", 2, ("a",), (), reason="single head").supported
    blocked = ChannelGroup("b", 4, ("conv",), (), blocks=2)
    assert blocked.channels([1, 3]) == [1, 3, 5, 7] and g.channels([2, 0]) == [0, 2]
    a = GroupAnalysis()
    assert a.groups == {} and a.error == "" and GroupAnalysis().groups is not a.groups  # fresh containers each
