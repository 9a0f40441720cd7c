import copy
import warnings

import pytest
import torch
import torch_pruning as tp
from zoo import make

import workbench as wb
from workbench.errors import CriterionError, PlanError, WorkbenchWarning
from workbench.masks import n_to_prune


def weights(bench):
    return {n: bench.model.get_parameter(n) for t in bench.targets for n in t.param_names() if not t.tied_to}


@pytest.mark.parametrize("name", ["rescat", "lstm", "mha"])
@pytest.mark.parametrize("ratio", [0.1, 0.5, 0.83])
def test_global_pruning_removes_exactly_round_ratio_n(name, ratio):
    model, data = make(name)
    bench = wb.Workbench(model, data)
    pool = [n for t in bench.targets if t.kind in ("linear", "conv", "lstm", "attention") for n in t.param_names()]
    n = sum(model.get_parameter(p).numel() for p in pool)
    bench.apply(wb.Plan.global_(ratio), evaluate=False)
    removed = sum(int(bench.store.current(p).sum()) for p in pool if bench.store.current(p) is not None)
    assert removed == n_to_prune(ratio, n)
    # global means the smallest weights overall: every kept weight >= every pruned weight
    masks = {p: bench.store.current(p) for p in pool}
    bench.undo()
    kept = torch.cat([model.get_parameter(p)[~m].abs() for p, m in masks.items()])
    pruned = torch.cat([model.get_parameter(p)[m].abs() for p, m in masks.items()])
    assert pruned.max() <= kept.min()


def test_global_pruning_matches_torch_prune_global_unstructured():
    from torch.nn.utils import prune

    model, data = make("rescat")
    ref = copy.deepcopy(model)
    bench = wb.Workbench(model, data)
    bench.apply(wb.Plan.global_(0.6), evaluate=False)
    mods = [(m, "weight") for m in ref.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    prune.global_unstructured(mods, pruning_method=prune.L1Unstructured, amount=0.6)
    names = [n for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    for (m, _), name in zip(mods, names):
        assert torch.equal(m.weight_mask == 0, bench.store.current(f"{name}.weight")), name


@pytest.mark.parametrize("ratio", [0.3, 0.5])
def test_per_layer_weight_pruning_hits_each_layer(ratio):
    model, data = make("lstm")
    bench = wb.Workbench(model, data)
    bench.apply(wb.Plan.uniform(ratio), evaluate=False)
    for t in bench.targets:
        if t.kind in ("linear", "lstm"):
            got = sum(int(bench.store.current(p).sum()) for p in t.param_names())
            assert got == n_to_prune(ratio, t.numel), t.name


def test_ratios_count_what_is_already_pruned_and_never_regrow():
    model, data = make("rescat")
    bench = wb.Workbench(model, data)
    bench.apply(wb.Plan.uniform(0.5, criterion="random"), evaluate=False)
    first = {k: v.clone() for k, v in bench.masks.items()}
    bench.apply(wb.Plan.uniform(0.7, criterion="random"), evaluate=False)
    for k, m in first.items():
        assert (bench.masks[k] | ~m).all()  # old pruned positions stay pruned
        assert int(bench.masks[k].sum()) == n_to_prune(0.7, m.numel())
    step = bench.apply(wb.Plan.uniform(0.2), evaluate=False)
    assert step.removed == 0  # a lower ratio removes nothing new


def _slices(bench, m, pos):
    p = bench.masks.get(m.param, torch.zeros(bench.model.get_parameter(m.param).shape, dtype=torch.bool))
    return p.select(m.dim, pos)


def test_structured_masks_zero_whole_coupled_groups():
    model, data = make("rescat")
    bench = wb.Workbench(model, data)
    bench.apply(wb.Plan.uniform(0.5, granularity="filter", criterion="l1"), evaluate=False)
    for gid, grp in bench.groups.groups.items():
        if not grp.supported:
            continue
        # a channel is pruned when the whole group slice is masked: every member, not just the root filter
        full = torch.ones(grp.size, dtype=torch.bool)
        for m in grp.members:
            for pos, root in zip(m.index.tolist(), m.root.tolist()):
                full[root] &= bool(_slices(bench, m, pos).all())
        assert int(full.sum()) == n_to_prune(0.5, grp.size), gid
        for m in grp.members:  # and what is masked is zero
            w = model.get_parameter(m.param)
            assert (w[bench.masks.get(m.param, torch.zeros_like(w, dtype=torch.bool))] == 0).all()
    # BatchNorm after the stem is zeroed with it, and the residual partner 'a' loses the same filters
    stem_pruned = (model.stem[0].weight.flatten(1) == 0).all(1)
    assert torch.equal(stem_pruned, (model.a.weight.flatten(1) == 0).all(1))
    assert (model.stem[1].weight[stem_pruned] == 0).all() and (model.stem[1].bias[stem_pruned] == 0).all()
    assert (model.b.weight[:, stem_pruned] == 0).all()  # consumers lose the input channels


def _shrink_like(model, example, group_root, channels):
    """Physically remove `channels` of `group_root`'s group with Torch-Pruning on a copy."""
    shrunk = copy.deepcopy(model)
    dg = tp.DependencyGraph().build_dependency(shrunk, example_inputs=(example,), forward_fn=lambda m, x: m(*x))
    mod = shrunk.get_submodule(group_root)
    pruner = dg.get_pruner_of_module(mod)
    dg.get_pruning_group(mod, pruner.prune_out_channels, sorted(channels)).prune()
    return shrunk


@pytest.mark.parametrize("arch", ["rescat", "mha"])
def test_masked_model_computes_what_the_physically_shrunk_model_computes(arch):
    model, data = make(arch)
    x = data[0][0]
    bench = wb.Workbench(model, data)
    for gid, grp in bench.groups.groups.items():
        if not grp.supported or grp.unit != "channel" or any(len(bench.targets[p].groups) > 1 for p in grp.producers):
            continue
        dense = copy.deepcopy(model)
        plan = wb.Plan(
            {
                p: wb.LayerPlan(0.5, "filter" if bench.targets[p].kind == "conv" else "neuron", "l1")
                for p in grp.producers
            }
        )
        bench.apply(plan, evaluate=False)
        root_w = model.get_parameter(f"{gid}.weight")
        pruned = [c for c in range(grp.size * grp.blocks) if (root_w[c] == 0).all()]  # channels, every block
        assert pruned
        shrunk = _shrink_like(dense, x, gid, pruned)
        assert sum(p.numel() for p in shrunk.parameters()) < sum(p.numel() for p in dense.parameters())
        torch.testing.assert_close(model(x), shrunk(x), atol=1e-5, rtol=1e-5)
        bench.undo()


def test_advice_names_a_coupled_layer_only_when_it_can_follow():
    import dataclasses

    model, data = make("rescat")
    bench = wb.Workbench(model, data)
    t = bench.targets["stem.0"]  # as if stem.0's filters were refused for a reason of their own (a split elsewhere)
    blocked = dataclasses.replace(
        t, granularities=("weight",), unsupported={**t.unsupported, "filter": "its channels are split by torch.chunk"}
    )
    bench.targets = type(bench.targets)([blocked if x.name == "stem.0" else x for x in bench.targets])
    with pytest.raises(PlanError, match=r"'a' shares its channels with 'stem.0', which cannot lose filters \(its "):
        bench.preview(wb.Plan({"a": wb.LayerPlan(0.5, "filter")}))


def test_partially_covered_group_is_an_error_when_named_and_skipped_by_default():
    model, data = make("rescat")
    bench = wb.Workbench(model, data)
    with pytest.raises(PlanError, match=r"'a' shares its channels with \[.*'stem.0'"):
        bench.preview(wb.Plan({"a": wb.LayerPlan(0.5, "filter")}))
    sel = bench.preview(wb.Plan.uniform(0.5, granularity="filter", exclude=["a"]))
    assert "stem.0" in sel.skipped and "stem.0" not in sel.layers
    with pytest.raises(PlanError, match="same ratio"):
        bench.preview(wb.Plan({"a": wb.LayerPlan(0.5, "filter"), "stem.0": wb.LayerPlan(0.4, "filter")}))


UNIT_CRITERIA = ("entropy", "apoz")  # score output units from activations: linear/conv/norm layers only


@pytest.mark.parametrize("name", ["rescat", "lstm", "mha", "tied"])
@pytest.mark.parametrize("criterion", wb.criteria.available())
def test_every_criterion_prunes_every_architecture(name, criterion):
    model, data = make(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WorkbenchWarning)
        bench = wb.Workbench(model, data)
    include = "*"
    if criterion == "bn_scale":  # needs a BatchNorm right after each layer: a clear error names the first without
        with pytest.raises(CriterionError, match="not followed by one"):
            bench.apply(wb.Plan.uniform(0.5, criterion=criterion, include=include), evaluate=False)
        return
    if criterion in UNIT_CRITERIA:
        include = [t.name for t in bench.targets if t.kind in ("linear", "conv", "norm") and not t.tied_to]
        include = [n for n in include if n != "attn.out_proj"]  # called inside attention, never as a module
    bench.apply(wb.Plan.uniform(0.5, criterion=criterion, include=include), evaluate=False)
    assert 0.4 < bench.report(evaluate=False).sparsity < 0.6 or criterion in UNIT_CRITERIA
    for t in bench.targets:
        if (t.name in include or include == "*") and not t.tied_to:
            got = sum(int(bench.store.current(p).sum()) for p in t.param_names() if bench.store.current(p) is not None)
            assert got == n_to_prune(0.5, t.numel), (t.name, criterion)
