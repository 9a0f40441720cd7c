"""synflow: closed forms on linear networks, conservation of synaptic flow, data independence, no overflow."""

import itertools

import pytest
import torch
from conftest import assert_bitwise, assert_plain, snapshot

import workbench as wb
from workbench.criteria.synflow import ones_like_input, synflow_scores

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is fastest and steadiest


def mlp(widths, seed=0, bias=False):
    torch.manual_seed(seed)
    layers = []
    for a, b in itertools.pairwise(widths):
        layers += [torch.nn.Linear(a, b, bias=bias), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers[:-1])


def test_two_layer_linear_closed_form():
    model = mlp([3, 4, 2])
    s = synflow_scores(model, torch.ones(1, 3, dtype=torch.float64))
    w1, w2 = model[0].weight.detach().double().abs(), model[2].weight.detach().double().abs()
    torch.testing.assert_close(s["0.weight"], w1 * w2.sum(0)[:, None])  # |W1_ij| * sum_k |W2_ki|
    torch.testing.assert_close(s["2.weight"], w2 * w1.sum(1)[None, :])  # |W2_ki| * sum_j |W1_ij|


def test_every_layer_carries_the_same_total_flow():
    # Tanaka et al., Theorem 1: without biases, each layer's scores sum to R = sum of the output
    model = mlp([6, 8, 8, 3])
    x = torch.ones(1, 6, dtype=torch.float64)
    s = synflow_scores(model, x)
    totals = [float(s[f"{i}.weight"].sum()) for i in (0, 2, 4)]
    r = float(
        torch.func.functional_call(
            model, {k: v.detach().double().abs() for k, v in model.state_dict().items()}, (x,)
        ).sum()
    )
    assert totals == pytest.approx([r] * 3, rel=1e-9)


def test_masked_weights_carry_no_flow():
    model = mlp([3, 4, 2])
    mask = torch.zeros(4, 3, dtype=torch.bool)
    mask[1] = True  # cut every input of hidden unit 1
    s = synflow_scores(model, torch.ones(1, 3, dtype=torch.float64), {"0.weight": mask})
    assert (s["0.weight"][1] == 0).all() and (s["2.weight"][:, 1] == 0).all()


def test_data_free_only_the_input_shape_matters():
    model = mlp([5, 6, 3], bias=True)
    a = [(torch.randn(4, 5), torch.zeros(4, dtype=torch.long))]
    b = [(torch.rand(9, 5) * 100, torch.ones(9, dtype=torch.long))]
    ma = wb.Workbench(model, a).preview(wb.Plan.global_(0.5, criterion="synflow")).masks
    mb = wb.Workbench(model, b).preview(wb.Plan.global_(0.5, criterion="synflow")).masks
    assert all(torch.equal(ma[k], mb[k]) for k in ma)
    assert ones_like_input(a).shape == (1, 5) and ones_like_input(a).dtype == torch.float64


def test_float64_and_normalised_so_deep_nets_do_not_overflow():
    model = mlp([16] * 41)  # 40 layers: the flow grows like |w|^40
    with torch.no_grad():
        for m in model:
            if isinstance(m, torch.nn.Linear):
                m.weight.mul_(40)
    bench = wb.Workbench(model, [(torch.randn(2, 16), torch.zeros(2, dtype=torch.long))])
    sel = bench.preview(wb.Plan.global_(0.5, criterion="synflow"))
    assert 0.45 < sum(int(m.sum()) for m in sel.masks.values()) / sum(m.numel() for m in sel.masks.values()) < 0.55


def test_batchnorm_in_eval_and_model_untouched():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(), torch.nn.Flatten())
    model.append(torch.nn.Linear(36, 3))
    model.train()
    snap = snapshot(model)
    bench = wb.Workbench(model, [(torch.randn(4, 1, 5, 5), torch.zeros(4, dtype=torch.long))])
    bench.preview(wb.Plan.global_(0.7, criterion="synflow"))
    assert_bitwise(model, snap)  # running stats untouched: BatchNorm ran in eval mode on copies
    assert_plain(model)
    assert model.training and all(m.training for m in model)
    assert all(p.grad is None for p in model.parameters())


def test_the_registered_criterion_is_iterative_and_avoids_the_layer_collapse_of_one_round():
    model, data = wb.demo.load("digits-cnn", pretrained=False)
    bench = wb.Workbench(model, data)
    scores = synflow_scores(model, ones_like_input(data.calib))
    names = [p for t in bench.targets if t.kind in ("conv", "linear") for p in t.param_names()]
    from workbench.masks import n_to_prune
    from workbench.masks.topk import lowest_k

    total = sum(scores[n].numel() for n in names)
    one = dict(zip(names, lowest_k([lambda n=n: scores[n] for n in names], n_to_prune(0.9, total))))
    assert bool(one["features.7.weight"].all())  # one round at 90%: a whole conv layer goes, the net is dead
    sel = bench.preview(wb.Plan.global_(0.9, criterion="synflow"))
    assert all(not bool(sel.masks[n].all()) for n in names)  # iterative: every layer keeps weights
    assert sum(int(sel.masks[n].sum()) for n in names) == n_to_prune(0.9, total)
