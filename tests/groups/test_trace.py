"""groups/trace.py: Torch-Pruning's dependency graph turned into groups that mask exactly: for every supported traced
group of the test architectures, masking a channel everywhere the group says gives the outputs of masking only the
input slices of the layers that read it (nothing in the group mixes channels), and of masking only the rest (the
group zeroes the channel wherever it is made); groups
that cannot be exact say why; the trace leaves the model as it was."""

import pytest
import torch
from conftest import assert_bitwise, assert_plain, snapshot
from torch import nn
from zoo import make

from workbench.groups import analyze_groups
from workbench.groups.trace import _op_name, custom_pruners, traced_output


def _zero(model, masks):
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, mask in masks.items():
            params[name][mask] = 0


@pytest.mark.parametrize("arch", ["rescat", "mha"])
def test_a_traced_group_masks_a_channel_exactly(arch):
    model, data = make(arch)
    model.eval()
    x = data[0][0]
    snap = snapshot(model)
    analysis = analyze_groups(model, x)
    assert_bitwise(model, snap)
    assert_plain(model)
    shapes = {n: p.shape for n, p in model.named_parameters()}
    traced = [g for g in analysis.groups.values() if g.origin == "trace" and g.supported]
    assert traced
    for g in traced:
        for c in {0, g.size // 2, g.size - 1}:
            pruned = torch.zeros(g.size, dtype=torch.bool)
            pruned[c] = True
            masks = g.masks(pruned, shapes)
            readers = {m.param for m in g.members if m.dim == 1 and not m.producer and m.param.endswith("weight")}
            assert readers, g.id
            _zero(model, masks)
            with torch.no_grad():
                full = model(x)
            model.load_state_dict(snap)
            _zero(model, {p: masks[p] for p in readers if p in masks})  # readers of this channel
            with torch.no_grad():
                only_readers = model(x)
            model.load_state_dict(snap)
            _zero(model, {p: m for p, m in masks.items() if p not in readers})
            with torch.no_grad():
                no_readers = model(x)  # the channel's producers and per-channel parameters zeroed: the channel is 0
            model.load_state_dict(snap)
            for got in (only_readers, no_readers):
                torch.testing.assert_close(full, got, rtol=1e-5, atol=1e-6, msg=lambda s, g=g, c=c: f"{g.id}[{c}]: {s}")


def test_groups_that_cannot_be_exact_say_why():
    model, data = make("mha")
    analysis = analyze_groups(model.eval(), data[0][0])
    unsupported = [g for g in analysis.groups.values() if not g.supported]
    assert unsupported and all(g.reason.strip() for g in unsupported)


def test_op_names_outputs_and_pruners_for_subclasses():
    assert _op_name(type("N", (), {"name": "aten.relu (ReluBackward0)"})()) == "Relu"
    assert _op_name(type("N", (), {"name": "plain"})()) == "plain"
    t = torch.zeros(2)
    assert traced_output(t) is t and traced_output((t, t)) == (t, t)
    assert traced_output({"logits": t, "cache": [t]}) is t

    class BatchNormAct2d(nn.BatchNorm2d):  # timm's: a BatchNorm2d that also applies the activation
        pass

    pruners = custom_pruners(nn.Sequential(nn.Conv2d(1, 2, 1), BatchNormAct2d(2), nn.BatchNorm2d(2)))
    assert list(pruners) == [BatchNormAct2d]  # exact types Torch-Pruning knows need no pruner of ours
