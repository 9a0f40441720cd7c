"""analysis/_graph.py: running a model with some parameters masked never touches the live model: masked_params makes
new tensors under every name of a tied one, clone_with shares everything else, and the suffix runner's outputs (only
the nodes downstream of a masked module re-run) equal a full forward of the masked model."""

import copy

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


class _Odd(nn.Module):
    """What a structural copy must treat as deepcopy does: a hook bound to the module itself, a plain tensor
    attribute, a mutable list, a shared submodule, an RNN (its own __setstate__) and a module with __slots__-free
    custom __deepcopy__."""

    class _Custom(nn.Linear):
        copies = 0

        def __deepcopy__(self, memo):
            type(self).copies += 1
            new = nn.Linear.__new__(type(self))
            memo[id(self)] = new
            new.__dict__.update({k: copy.deepcopy(v, memo) for k, v in self.__dict__.items()})
            return new

    def __init__(self):
        super().__init__()
        self.a, self.rnn, self.c = nn.Linear(4, 4), nn.GRU(4, 4, batch_first=True), self._Custom(4, 4)
        self.shared = self.a
        self.table = torch.arange(4.0)  # not a parameter or buffer: copied, as deepcopy copies it
        self.seen = [1, 2]
        self.register_forward_pre_hook(self._pre)

    def _pre(self, _module, args):
        self.seen.append(len(self.seen))

    def forward(self, x):
        h = self.shared(self.a(x))
        h, _ = self.rnn(h.unsqueeze(1))
        return self.c(h.squeeze(1)) + self.table


def test_a_structural_copy_is_what_deepcopy_with_the_tensors_in_memo_gives():
    """clone_with builds modules directly (deepcopy's generic path is 4x slower); compared with deepcopy on the same
    memo: the same classes, shared parameters and buffers, copied plain tensors and lists, a shared submodule
    copied once, hooks bound to the copy, custom __deepcopy__ honoured."""
    import copy as copy_module

    from workbench.analysis._graph import _structural_copy

    torch.manual_seed(0)
    cases = [(_Odd().eval(), torch.randn(3, 4))] + [(m, d[0][0][:3]) for m, d in map(make, ("lstm", "mha", "tied"))]
    for model, x in cases:
        memo = {id(t): t for t in [*model.parameters(), *model.buffers()]}
        ref = copy_module.deepcopy(model, dict(memo))
        got = _structural_copy(model, dict(memo))
        for (n1, m1), (n2, m2), (_, m0) in zip(ref.named_modules(), got.named_modules(), model.named_modules()):
            assert n1 == n2 and type(m1) is type(m2) and m2 is not m0
            assert list(m1.__dict__) == list(m2.__dict__)
            for key, v1 in m1.__dict__.items():
                v2, v0 = m2.__dict__[key], m0.__dict__[key]
                if isinstance(v1, torch.Tensor):
                    assert (v2 is v0) == (v1 is v0) and torch.equal(v1, v2)
                elif key in ("_parameters", "_buffers"):
                    assert all(v2[k] is v0[k] for k in v0)
                elif not isinstance(v1, nn.Module) and key != "_modules":
                    assert type(v1) is type(v2) and ((v2 is v0) == (v1 is v0) or not v0)
        with torch.no_grad():
            assert torch.equal(ref(x), got(x))
    odd = _Odd()
    got = clone_with(odd, {})
    assert got.shared is got.a and got.a is not odd.a and got.table is not odd.table
    got(torch.randn(2, 4))
    assert odd.seen == [1, 2] and got.seen == [1, 2, 2]  # the hook ran on the copy, bound to it
    assert _Odd._Custom.copies >= 2


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
