"""analysis/_graph.py: running a model with some parameters masked never touches the live model: masked_params makes
new tensors under every name of a tied one, clone_with shares everything else, and the suffix runner's outputs (only
the nodes downstream of a masked module re-run) equal a full forward of the masked model."""

import pytest
import torch
from conftest import assert_bitwise, assert_plain, snapshot
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from zoo import make

from workbench.analysis._graph import SuffixRunner, clone_with, full_outputs, masked_params


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Linear(4, 6, bias=False)
        self.mid = nn.Linear(6, 6)
        self.out = nn.Linear(6, 4, bias=False)
        self.head = nn.Linear(4, 6, bias=False)
        self.head.weight = self.emb.weight  # tied

    def forward(self, x):
        return self.head(self.out(torch.relu(self.mid(self.emb(x)))))


def test_masked_params_are_new_tensors_under_every_name_of_a_tied_one():
    model = Tied()
    snap = snapshot(model)
    mask = torch.zeros(6, 4, dtype=torch.bool)
    mask[0] = True
    p = masked_params(model, {"emb.weight": mask})
    assert set(p) == {"emb.weight", "head.weight"} and p["emb.weight"] is p["head.weight"]
    assert (p["emb.weight"][0] == 0).all() and torch.equal(p["emb.weight"][1:], model.emb.weight[1:])
    assert p["emb.weight"].data_ptr() != model.emb.weight.data_ptr()
    assert_bitwise(model, snap)


def test_a_clone_shares_every_tensor_but_the_replaced_ones():
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    new = torch.zeros(3, 3)
    clone = clone_with(model, {"0.weight": new})
    assert clone[0].weight.data_ptr() == new.data_ptr() and not clone[0].weight.requires_grad
    assert clone[0].bias is model[0].bias and clone[1].running_mean is model[1].running_mean
    assert model[0].weight.data_ptr() != new.data_ptr()  # the original keeps its tensor


@settings(max_examples=10, deadline=None)
@given(st.sampled_from(["rescat", "mha"]), st.floats(0.1, 0.9), st.integers(0, 2**16))
def test_suffix_outputs_equal_a_full_forward_of_the_masked_model(arch, ratio, seed):
    model, data = make(arch)
    snap = snapshot(model)
    runner = SuffixRunner(model, data)
    g = torch.Generator().manual_seed(seed)
    names = [n for n, p in model.named_parameters() if p.dim() > 1]
    name = names[int(torch.randint(len(names), (1,), generator=g))]
    mask = torch.rand(model.get_parameter(name).shape, generator=g) < ratio
    params = masked_params(model, {name: mask})
    for (a, _, ya), (b, _, yb) in zip(runner.outputs(params), full_outputs(model, params, data), strict=True):
        assert not torch.is_inference_mode_enabled()  # the generators never hold inference mode across a yield
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        assert torch.equal(ya, yb)
    assert not torch.is_inference_mode_enabled()  # consumed in step, they left it off (one was left on before)
    assert_bitwise(model, snap)
    assert_plain(model)


def test_the_suffix_runner_reruns_only_what_a_mask_reaches_and_refuses_what_it_cannot_replay():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    data = [(torch.randn(5, 3), torch.zeros(5, dtype=torch.long))]
    runner = SuffixRunner(model, data)
    _, _, order = runner.plan({"2.weight": torch.zeros(2, 4)})
    assert [n.target for n in order if n.op == "call_module"] == ["2"]  # layer 0 and the ReLU come from the cache
    with pytest.raises(LookupError, match="not reached by any traced module call"):
        runner.plan({"nope.weight": torch.zeros(1)})
    with pytest.raises(MemoryError, match="exceed"):
        SuffixRunner(model, data, max_bytes=16)
    with pytest.raises(TypeError, match="keyword inputs"):
        SuffixRunner(model, [({"x": torch.randn(2, 3)}, torch.zeros(2, dtype=torch.long))])
