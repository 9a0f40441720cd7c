"""report.py: a report counts every target's prunable tensors once (tied ones once), its sparsity is the share of
those at zero, it round-trips to plain data, and its text lines up and says what changed."""

import json
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import workbench as wb
from workbench.report import LayerReport, Report, layer_reports, target_sparsity


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 3))


@settings(max_examples=15, deadline=None)
@given(st.floats(0.0, 0.95), st.sampled_from(["weight", "filter"]))
def test_counts_and_sparsity_are_those_of_the_target_tensors(ratio, granularity):
    model = _model()
    bench = wb.Workbench(model, [(torch.randn(4, 1, 8, 8), torch.zeros(4, dtype=torch.long))])
    bench.apply(wb.Plan.uniform(ratio, granularity=granularity), evaluate=False)
    rows = layer_reports(model, bench.targets)
    for r in rows:
        ps = [model.get_parameter(n) for n in bench.targets[r.name].param_names()]
        assert r.params == sum(p.numel() for p in ps) and r.nonzeros == sum(int((p != 0).sum()) for p in ps)
        assert r.sparsity == pytest.approx(1 - r.nonzeros / r.params)
    rep = bench.report(evaluate=False)
    assert rep.layers == rows and rep.params == sum(r.params for r in rows)
    assert rep.sparsity == pytest.approx(target_sparsity(model, bench.targets))
    assert rep.model_params == sum(p.numel() for p in model.parameters())


def test_tied_tensors_are_counted_once():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(10, 4)
            self.head = nn.Linear(4, 10, bias=False)
            self.head.weight = self.emb.weight

        def forward(self, x):
            return self.head(self.emb(x))

    model = Tied()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", wb.WorkbenchWarning)  # "shares its weights ... prunes them once"
        bench = wb.Workbench(model)
    rows = layer_reports(model, bench.targets)
    assert sum(r.params for r in rows) == 40  # the shared 10x4 matrix once


def test_empty_layers_and_a_report_of_nothing_are_zero_sparsity():
    assert LayerReport("x", "linear", 0, 0).sparsity == 0.0
    assert Report((), 0, None, None, 0).sparsity == 0.0


def test_to_dict_is_plain_data_and_the_text_lines_up():
    rows = (LayerReport("features.0", "conv", 100, 25), LayerReport("fc", "linear", 300, 300))
    dense = {"metric": 0.9, "metric_name": "accuracy", "loss": 0.3}
    now = {"metric": 0.85, "metric_name": "accuracy", "loss": 0.4}
    rep = Report(rows, 420, dense, now, steps=2)
    d = json.loads(json.dumps(rep.to_dict()))
    assert d["params"] == 400 and d["nonzeros"] == 325 and d["sparsity"] == pytest.approx(75 / 400)
    assert d["layers"][0] == {"name": "features.0", "kind": "conv", "params": 100, "nonzeros": 25, "sparsity": 0.75}
    lines = str(rep).splitlines()
    assert lines[0].startswith("layer") and set(lines[1]) == {"-"} and len(lines[1]) == len(lines[0])
    assert lines[2].split() == ["features.0", "conv", "100", "25", "75.0%"]
    assert lines[5].split() == ["total", "400", "325", "18.8%"]
    assert "all parameters: 420; steps applied: 2" in str(rep)
    assert "accuracy: dense 0.9000 -> now 0.8500 (delta -0.0500); loss 0.3000 -> 0.4000" in str(rep)
    assert "entry 0 is not dense" not in str(rep) and repr(rep) == str(rep)
    started = Report(rows, 420, dense, now, 2, start_sparsity=0.3)
    assert "arrived with 30% of its target weights at zero" in str(started) and "accuracy: start 0.9000" in str(started)
