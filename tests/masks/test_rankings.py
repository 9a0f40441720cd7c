"""masks/rankings.py: a ranking scored once gives masks at any ratio: exactly the asked count, the lowest scores,
nested as the ratio grows, what is already pruned first; weight_masks finds the same masks without the argsort;
a granularity whose mask_fn returns a wrong mask is named."""

import pytest
import torch
from conftest import assert_bitwise, snapshot
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import workbench as wb
from workbench.errors import GranularityError
from workbench.masks import get_granularity, n_to_prune
from workbench.masks.rankings import pattern_masks, weight_masks, weight_ranking


def _bench(seed: int, ties: bool):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    if ties:  # two magnitudes, no zeros: ties are decided by position
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randint(1, 3, p.shape).float() * (torch.randint(0, 2, p.shape) * 2 - 1))
    bench = wb.Workbench(model)
    pairs = [(t, p) for t in bench.targets for p in t.param_names() if p.endswith("weight")]
    return model, bench, pairs


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**16), st.booleans(), st.lists(st.floats(0, 0.99), min_size=1, max_size=4))
def test_masks_are_the_lowest_scores_nested_and_equal_to_weight_masks(seed, ties, ratios):
    model, bench, pairs = _bench(seed, ties)
    snap = snapshot(model)
    ranking = weight_ranking(model, bench.store, pairs, "magnitude", 0)
    n = sum(model.get_parameter(p).numel() for _, p in pairs)
    assert ranking.n == n
    previous = None
    for r in sorted(ratios):
        masks = ranking.masks(r)
        assert set(masks) == {p for _, p in pairs}
        chosen = torch.cat([masks[p].reshape(-1) for _, p in pairs])
        assert int(chosen.sum()) == n_to_prune(r, n)
        w = torch.cat([model.get_parameter(p).detach().abs().reshape(-1) for _, p in pairs])
        if chosen.any() and not chosen.all():
            assert w[chosen].max() <= w[~chosen].min()  # magnitude: the smallest go first
        if previous is not None:
            assert (chosen | ~previous).all()  # a higher ratio prunes a superset
        previous = chosen
        same = weight_masks(model, bench.store, pairs, "magnitude", r, 0)
        assert all(torch.equal(same[p], masks[p]) for _, p in pairs), r  # ties by position in both
    assert_bitwise(model, snap)  # ranking scores the weights and writes nothing


def test_weights_already_pruned_go_first_and_stay_in_the_masks():
    model, bench, pairs = _bench(0, False)
    bench.apply(wb.Plan.uniform(0.5, criterion="random"), evaluate=False)  # pruned at random: not the smallest
    old = {p: bench.masks[p].clone() for _, p in pairs}
    ranking = weight_ranking(model, bench.store, pairs, "magnitude", 0)
    masks = ranking.masks(0.75)
    assert all((masks[p] | ~old[p]).all() for _, p in pairs)


def test_a_pattern_granularity_masks_each_tensor_and_a_wrong_mask_fn_is_named():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 4))
    bench = wb.Workbench(model)

    class Wrong:
        name = "wrong-shape"

        @staticmethod
        def mask_fn(scores, ratio, cur, g):
            return torch.zeros(3, dtype=torch.bool)

    at = pattern_masks(model, bench.store, bench.targets["0"], Wrong, "magnitude", 0, (None, {}))
    with pytest.raises(GranularityError, match=r"'wrong-shape'.*torch\.bool mask of shape \(3,\) for '0\.weight'"):
        at(0.5)
    nm = pattern_masks(model, bench.store, bench.targets["0"], get_granularity("2:4"), "magnitude", 0, (None, {}))
    mask = nm(0.5)["0.weight"]
    assert mask.shape == (4, 8) and (mask.view(4, 2, 4).sum(-1) == 2).all()  # 2 of every 4
