"""groups/analyze.py: a trace stopped by its time bound leaves no hooks and the model's train flags as they were."""

from __future__ import annotations

import time

import torch

from workbench.groups import analyze_groups


def test_a_trace_stopped_mid_forward_leaves_no_hooks():
    class Slow(torch.nn.Module):  # its forward never ends: the bound stops the trace inside it
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Linear(4, 8), torch.nn.Linear(8, 2)

        def forward(self, x):
            h = self.a(x)
            while True:
                h = h + 0

    model = Slow()
    analysis = analyze_groups(model, torch.randn(2, 4), timeout=1.0)
    assert "did not finish" in analysis.error
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_a_hanging_dependency_graph_is_stopped(monkeypatch):
    import torch_pruning as tp

    def forever(*args, **kwargs):
        while True:
            pass

    monkeypatch.setattr(tp.DependencyGraph, "get_pruning_group", forever)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2)).train()
    t0 = time.perf_counter()
    analysis = analyze_groups(model, torch.randn(2, 4), timeout=1.0)
    # the bound is the behaviour under test: a 1 s bound returns in about 1 s (10x margin for a busy machine)
    assert time.perf_counter() - t0 < 10
    assert "did not finish within 1 s" in analysis.error
    assert all(m.training for m in model.modules())  # the trace's eval mode is undone after a stop too
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
