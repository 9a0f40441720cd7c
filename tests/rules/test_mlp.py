"""rules/mlp.py (rule_groups, with rules/attention.py): heads and MLP neurons of real Hugging Face blocks, masked
exactly.

By construction: zeroing a head's q/k/v rows and output-projection columns gives the same outputs as zeroing only
its output-projection columns (so the rule's indices hit that head and no other), and the same holds for an MLP
neuron and the output projection's column. Models are built from configs in memory (random weights, no download).
"""

from __future__ import annotations

import pytest
import torch

from workbench.groups import analyze_groups

from .models import MODELS, _ids, _logits, _zero


@pytest.mark.parametrize("name", list(MODELS))
def test_rule_groups_zero_exactly_one_unit(name):
    torch.manual_seed(0)
    model = MODELS[name].eval()
    ids = _ids()
    analysis = analyze_groups(model, {"input_ids": ids})
    # grouped-query attention used to hang Torch-Pruning's graph here: every trace finished, none was stopped by
    # analyze_groups' time bound (which would leave the module-tree rules standing alone, heads included)
    assert not any("did not finish" in e for e in (analysis.error, analysis.branch_error, analysis.hidden_error)), (
        analysis.error or analysis.branch_error or analysis.hidden_error
    )
    units = {g.unit for g in analysis.groups.values() if g.supported}
    assert "head" in units and "channel" in units, analysis.error
    shapes = {n: p.shape for n, p in model.named_parameters()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    checked = 0
    for g in analysis.groups.values():
        if not g.supported or not (":heads" in g.id or (g.unit == "channel" and len(g.members) >= 2)):
            continue
        pruned = torch.zeros(g.size, dtype=torch.bool)
        pruned[g.size // 2] = True
        masks = g.masks(pruned, shapes)
        consumer = [g.members[-1]]  # the output projection's input slice: the rules list it last
        assert consumer[0].param.endswith("weight"), g.id
        _zero(model, masks)
        full = _logits(model, ids)
        model.load_state_dict(state)
        only = {m.param: masks[m.param] for m in consumer}
        _zero(model, only)
        part = _logits(model, ids)
        model.load_state_dict(state)
        torch.testing.assert_close(full, part, rtol=1e-5, atol=1e-5, msg=lambda s, g=g: f"{g.id}: {s}")
        checked += 1
    assert checked >= 2
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
