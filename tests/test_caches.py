"""_caches.py: what a forward pass caches on a model's modules (tensor attributes, dicts of tensors) is put back as
it was, so a model that caches on its first call is unchanged by the workbench's traces and still copies."""

import copy

import torch
from torch import nn

from workbench._caches import restore_caches, snapshot_caches, symbolic_trace


class Caching(nn.Module):
    """Caches on its first call, as LeViT keeps its gathered attention biases: a tensor attribute and a dict entry."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.bias_cache = {}
        self.keep = torch.ones(4)  # a tensor attribute that was there before

    def forward(self, x):
        if "b" not in self.bias_cache:
            self.bias_cache["b"] = self.fc.bias * 2
            self.last = x.sum()
            self.keep = self.keep * 3
        return self.fc(x) + self.bias_cache["b"] + self.keep


def test_restore_puts_back_what_a_forward_cached_and_keeps_what_was_there():
    model = Caching()
    keep = model.keep
    before = snapshot_caches(model)
    model(torch.randn(2, 4))  # caches a graph-holding tensor, adds an attribute, replaces one
    assert model.bias_cache and hasattr(model, "last") and model.keep is not keep
    restore_caches(model, before)
    assert model.bias_cache == {} and not hasattr(model, "last") and model.keep is keep
    copy.deepcopy(model)  # a cached tensor holding its autograd graph would break this


def test_a_dict_entry_cached_before_is_kept_and_one_replaced_is_put_back():
    model = Caching()
    with torch.no_grad():
        model(torch.randn(1, 4))
    first = model.bias_cache["b"]
    before = snapshot_caches(model)
    model.bias_cache["b"] = torch.zeros(4)
    model.bias_cache["new"] = torch.zeros(1)
    restore_caches(model, before)
    assert list(model.bias_cache) == ["b"] and model.bias_cache["b"] is first


def test_symbolic_trace_leaves_no_proxy_behind_and_the_model_still_runs():
    class Plain(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)
            self.cache = {}

        def forward(self, x):
            self.cache["x"] = x  # during a trace, a Proxy
            return self.fc(x)

    model = Plain()
    gm = symbolic_trace(model)
    assert model.cache == {}
    x = torch.randn(3, 4)
    assert torch.equal(gm(x), model(x))
