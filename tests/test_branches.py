"""branches.py, the granularity `layer`: whole residual branches. The masked model computes what the model without
the branch computes, the plan removes the lowest-scoring share of branches, undo is exact, compile's shrink cuts them
out of the graph, and models without removable branches say why."""

import copy

import pytest
import torch
from conftest import assert_bitwise, assert_plain, snapshot

import workbench as wb
from workbench.branches import find_branches, remove_branches


def resnet():
    model, data = wb.demo.load("digits-resnet")
    return model, data, wb.Workbench(model, data)


def example(data):
    return data.example if isinstance(data.example, torch.Tensor) else data.example[0]


@pytest.mark.parametrize("branch", ["layer1", "layer2"])
def test_masking_a_branch_computes_the_model_without_it(branch):
    model, data, bench = resnet()
    dense = snapshot(model)
    first = bench.groups.branches[branch].modules[0]
    bench.apply(wb.Plan({first: wb.LayerPlan(0.5, "layer")}), evaluate=False)  # 1 candidate: round(0.5) = 1 goes
    b = bench.groups.branches[branch]
    assert set(bench.masks) == set(b.params) and all(bool(m.all()) for m in bench.masks.values())
    cut = remove_branches(copy.deepcopy(model), [b])
    assert not any(n.startswith(b.modules[0]) for n, _ in cut.named_modules())  # the modules are gone
    x = example(data)
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model(x), cut(x), atol=1e-6)
    bench.undo()
    assert_bitwise(model, dense)
    assert_plain(model)


def test_uniform_plan_removes_the_lowest_scoring_share_of_branches():
    model, _data, bench = resnet()
    assert sorted(bench.groups.branches) == ["layer1", "layer2"]
    step = bench.apply(wb.Plan.uniform(0.5, granularity="layer"))
    gone = [bid for bid, b in bench.groups.branches.items() if all(p in bench.masks for p in b.params)]
    assert len(gone) == 1 and step.removed == sum(
        model.get_parameter(p).numel() for p in bench.groups.branches[gone[0]].params
    )
    bench.reset()
    from workbench.masks.select import branch_scores

    scores = branch_scores(model, bench.targets, bench.groups, bench.store, ["layer1", "layer2"], "magnitude", 0)
    assert gone == [["layer1", "layer2"][int(torch.argmin(scores))]]
    sens = bench.sensitivity([0.5], granularity="layer", progress=False)
    # removing either block costs accuracy; shipped weights: -0.80 (layer1) and -0.62 (layer2)
    assert sens.values.shape == (2, 1) and (sens.values < 0).all()


def test_compile_shrink_cuts_the_branch_out_and_matches_the_masked_model():
    model, data, bench = resnet()
    bench.apply(wb.Plan.uniform(0.5, granularity="layer"))
    before = snapshot(model)
    fast, rep = wb.sparse.compile(bench, backend="shrink")
    assert any(k.startswith("branch ") for k in rep.removed_channels)
    assert rep.max_abs_err <= 1e-5 and rep.params_after < rep.params_before
    n_fast, n_model = (sum(p.numel() for p in m.parameters()) for m in (fast, model))
    assert n_fast < 0.5 * n_model
    x = example(data)
    model.eval()
    with torch.no_grad():
        assert torch.allclose(fast(x), model(x), atol=1e-5)
    assert_bitwise(model, before)


def test_layer_entries_must_share_one_ratio():
    _model, _data, bench = resnet()
    plan = wb.Plan({"layer1.conv1": wb.LayerPlan(0.5, "layer"), "layer2.conv1": wb.LayerPlan(0.3, "layer")})
    with pytest.raises(wb.PlanError, match="same ratio and criterion"):
        bench.apply(plan)
    assert len(bench.history) == 1


def test_models_without_removable_branches_say_why():
    model, data = wb.demo.load("digits-mlp")
    bench = wb.Workbench(model, data)
    with pytest.raises(wb.PlanError, match="not inside a removable residual branch"):
        bench.apply(wb.Plan.uniform(0.5, granularity="layer"))

    class Dynamic(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Linear(4, 4), torch.nn.Linear(4, 2)

        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
                x = x + self.a(x)
            return self.b(x)

    branches, why = find_branches(Dynamic())
    assert branches == [] and "torch.fx cannot trace" in why
    b2 = wb.Workbench(Dynamic(), [(torch.randn(4, 4), torch.tensor([0, 1, 0, 1]))])
    assert "torch.fx cannot trace" in b2.targets["a"].unsupported["layer"]


def test_a_branch_ending_in_a_nonlinearity_that_is_not_zero_at_zero_is_not_a_unit():
    class Block(torch.nn.Module):
        def __init__(self, gate):
            super().__init__()
            self.fc, self.gate, self.head = torch.nn.Linear(4, 4), gate, torch.nn.Linear(4, 2)

        def forward(self, x):
            return self.head(x + self.gate(self.fc(x)))

    assert [b.modules for b in find_branches(Block(torch.nn.ReLU()))[0]] == [("fc",)]
    assert find_branches(Block(torch.nn.Sigmoid()))[0] == []  # sigmoid(0) = 0.5: zero weights do not remove it


def test_a_shrunk_model_without_a_branch_exports_to_onnx_and_loads_back(tmp_path):
    _model, data, bench = resnet()
    bench.apply(wb.Plan.uniform(0.5, granularity="layer"))
    fast, _ = wb.sparse.compile(bench, backend="shrink")
    rep = wb.sparse.export(fast, tmp_path, formats=("safetensors", "onnx", "plan"))
    assert rep.onnx_max_abs_err is not None and rep.onnx_max_abs_err < 1e-4
    back = wb.sparse.load(tmp_path, wb.demo.build("digits-resnet"))  # check=True reproduces the saved outputs
    x = example(data)
    with torch.no_grad():
        assert torch.allclose(back(x), fast(x), atol=1e-5)
    assert sum(p.numel() for p in back.parameters()) == sum(p.numel() for p in fast.parameters())
