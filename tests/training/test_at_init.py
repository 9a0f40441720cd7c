"""training/at_init.py: iterative SynFlow prunes the asked share, keeps every layer alive where one round would not,
and a stop leaves the model bitwise dense."""

import pytest
import torch
from conftest import assert_bitwise, snapshot

import workbench as wb
from workbench.masks import n_to_prune

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is fastest and steadiest


def test_synflow_prune_iterates_keeps_every_layer_and_stops_cleanly():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 4), torch.nn.ReLU(), torch.nn.Linear(4, 64)
    )
    bench = wb.Workbench(model, [(torch.randn(2, 64), torch.zeros(2, dtype=torch.long))])
    dense = snapshot(model)

    def stop(done, total):
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        wb.training.synflow_prune(bench, 0.99, rounds=10, progress=stop)
    assert_bitwise(model, dense)
    assert bench.store.position == 0
    from workbench.criteria.synflow import synflow_scores
    from workbench.masks.topk import lowest_k

    scores = synflow_scores(model, torch.ones(1, 64, dtype=torch.float64))
    names = [f"{i}.weight" for i in (0, 2, 4)]
    total = sum(scores[n].numel() for n in names)
    one_round = dict(zip(names, lowest_k([lambda n=n: scores[n] for n in names], n_to_prune(0.99, total))))
    entry = wb.training.synflow_prune(bench, 0.99, rounds=30, progress=False)
    total = sum(m.weight.numel() for m in model if isinstance(m, torch.nn.Linear))
    assert entry.removed == n_to_prune(0.99, total) and entry.kind == "synflow"
    # no layer collapse: the 4-unit bottleneck keeps weights on both sides
    assert all(int((m.weight != 0).sum()) > 0 for m in model if isinstance(m, torch.nn.Linear))
    assert any(not torch.equal(one_round[n], bench.masks[n]) for n in one_round)  # iterating changes the masks
