"""recommend/context.py: what one `recommend` call measures once: built without writing to the model, its Taylor
term is the first-order prediction -g*w of the mean loss, its counts are what the masks remove, and its helpers
(masks of a plan, a masked state, a clone) leave the live model alone."""

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_bitwise, assert_plain, snapshot
from torch import nn

import workbench as wb
from workbench.recommend.context import _Ctx


def _bench(metric=None):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    g = torch.Generator().manual_seed(0)
    data = [(torch.randn(32, 8, generator=g), torch.randint(0, 3, (32,), generator=g)) for _ in range(2)]
    kw = {} if metric is None else {"metric": metric}
    return model, data, wb.Workbench(model, data, **kw)


def _ctx(bench, goal="latency"):
    return _Ctx(bench.state, goal, 0.01, torch.device("cpu"), 4)


WEIGHTS = 8 * 16 + 16 * 3  # the two Linear weights a default plan covers (biases are not among them)


def test_building_it_writes_nothing_and_measures_the_model_as_it_is():
    model, _, bench = _bench()
    before = snapshot(model)
    ctx = _ctx(bench)
    assert_bitwise(model, before)
    assert_plain(model)
    assert all(p.grad is None for p in model.parameters())  # the gradient pass writes no .grad
    assert ctx.metric_now == bench.evaluate()["metric"] and ctx.metric_name == "accuracy"
    assert ctx.params == WEIGHTS + 16 + 3 and ctx.n_weights == WEIGHTS and ctx.weights == {"0.weight", "2.weight"}
    assert ctx.current == {} and ctx.robust is None and ctx.robust_now is None
    assert ctx.flops == pytest.approx(
        sum(ctx.flops_per_weight[n] * model.get_parameter(n).numel() for n in ctx.weights)
    )


def test_the_taylor_term_is_minus_the_mean_loss_gradient_times_the_weight():
    model, data, bench = _bench()
    ctx = _ctx(bench)
    twin = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3)).double()
    twin.load_state_dict({k: v.double() for k, v in model.state_dict().items()})
    loss = sum(F.cross_entropy(twin(x.double()), y, reduction="sum") for x, y in data) / sum(len(y) for _, y in data)
    grads = torch.autograd.grad(loss, list(twin.parameters()))
    for (name, p), g in zip(twin.named_parameters(), grads):
        assert torch.allclose(ctx.taylor[name], -g * p.detach(), rtol=1e-4, atol=1e-9), name


def test_counts_are_what_the_masks_remove_beyond_the_current_ones():
    _, _, bench = _bench()
    none = _ctx(bench).counts({})
    assert none == {"size_ratio": 1.0, "sparsity": 0.0, "flops_kept": 1.0, "predicted_loss": 0.0}
    bench.apply(wb.Plan.uniform(0.5), evaluate=False)
    ctx = _ctx(bench)
    removed = sum(int(m.sum()) for m in ctx.current.values())
    now = ctx.counts(ctx.current)
    assert now["sparsity"] == removed / WEIGHTS and now["size_ratio"] == ctx.params / (ctx.params - removed)
    assert now["predicted_loss"] == 0.0  # masks already applied predict no further change
    more = ctx.masks(wb.Plan.uniform(0.75))
    new = {n: m & ~ctx.current[n] for n, m in more.items()}
    want = sum(float(ctx.taylor[n][m].sum()) for n, m in new.items())
    got = ctx.counts(more)
    assert got["predicted_loss"] == pytest.approx(want) and got["sparsity"] > now["sparsity"]
    assert got["flops_kept"] < now["flops_kept"] < 1.0


def test_masks_state_and_clone_leave_the_live_model_alone():
    model, data, bench = _bench()
    bench.apply(wb.Plan.uniform(0.5), evaluate=False)
    before = snapshot(model)
    ctx = _ctx(bench)
    masks = ctx.masks(wb.Plan({"2": wb.LayerPlan(0.5)}))
    assert set(masks) == {"0.weight", "2.weight"}  # the current step's masks, and the plan's
    assert torch.equal(masks["0.weight"], ctx.current["0.weight"]) and torch.equal(
        masks["2.weight"], bench.preview(wb.Plan({"2": wb.LayerPlan(0.5)})).masks["2.weight"]
    )
    clone = ctx.clone(masks)
    assert all((clone.get_parameter(n)[m] == 0).all() for n, m in masks.items())
    state = ctx.masked(clone, masks)
    assert state.model is clone and state.log is None and state.store.masks().keys() == masks.keys()
    assert ctx.metric(clone) == wb.evaluate(clone, data)["metric"]
    assert_bitwise(model, before)


def test_drop_is_how_much_worse_whichever_way_the_metric_points():
    _, _, bench = _bench()
    acc = _ctx(bench)
    assert acc.drop(acc.metric_now - 0.25) == pytest.approx(0.25)  # accuracy: higher is better
    _, _, bench = _bench(metric="loss")
    loss = _ctx(bench)
    assert loss.drop(loss.metric_now + 0.25) == pytest.approx(0.25)  # loss: lower is better


def test_the_robustness_goal_measures_fgsm_accuracy_once_on_an_unmasked_clone():
    from workbench.analysis.robustness import robust_accuracy
    from workbench.recommend.candidates import FGSM_EPS

    model, data, bench = _bench()
    ctx = _ctx(bench, goal="robustness")
    assert ctx.robust_now == float(robust_accuracy("fgsm", FGSM_EPS, seed=bench.state.seed)(model, data))
    c = ctx.cand(None, "weight", 0, 0.0, wb.Plan({}), {}, model, ctx.metric_now)
    assert c.robust == ctx.robust_now and c.counts == ctx.counts({})
