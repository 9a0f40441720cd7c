import copy
import pickle

import pytest
import torch
from conftest import assert_bitwise, assert_plain, snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from zoo import make

import workbench as wb
from workbench.errors import WorkbenchError
from workbench.masks.store import _pack, _unpack


@given(st.integers(1, 70), st.integers(0, 2**31 - 1))
def test_pack_unpack_roundtrip(n, seed):
    g = torch.Generator().manual_seed(seed)
    m = torch.rand(n, generator=g) < 0.5
    assert torch.equal(_unpack(_pack(m), m.shape), m)
    assert _pack(m).numel() == (n + 7) // 8


PLANS = [
    wb.Plan.uniform(0.3),
    wb.Plan.uniform(0.6, criterion="random"),
    wb.Plan.global_(0.5),
    wb.Plan.global_(0.9, criterion="l2"),
    wb.Plan.uniform(0.25, granularity="filter", criterion="l1"),
    wb.Plan.uniform(0.5, granularity="filter", criterion="random"),
    wb.Plan.uniform(0.4, granularity="neuron"),
    wb.Plan.uniform(0.2, include=["stem.1", "g_bn"]),
]


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.sampled_from(["apply", "undo", "redo", "reset", "goto"]), st.integers(0, 99)),
        min_size=100,
        max_size=100,
    )
)
def test_undo_redo_reset_restore_bitwise_over_random_steps(actions):
    model, data = make("rescat")
    bench = wb.Workbench(model, data)
    states = [snapshot(model)]  # states[i] = after i applied steps
    for action, k in actions:
        pos = bench.store.position
        if action == "apply":
            plan = PLANS[k % len(PLANS)]
            if plan.default.granularity == "neuron":
                plan = wb.Plan.uniform(0.4, granularity="filter", include=["stem.0", "a", "b", "dw"])
            bench.apply(plan, evaluate=k % 10 == 0)
            del states[pos + 1 :]
            states.append(snapshot(model))
        elif action == "undo" and pos > 0:
            bench.undo()
        elif action == "redo" and pos < len(states) - 1:
            bench.redo()
        elif action == "reset":
            bench.reset()
        elif action == "goto":
            bench.goto(k % len(states))
        assert_bitwise(model, states[bench.store.position])
    bench.reset()
    assert_bitwise(model, states[0])
    assert_plain(model)


def test_nothing_to_undo_or_redo_is_an_error():
    model, data = make("rescat")
    bench = wb.Workbench(model, data)
    with pytest.raises(WorkbenchError, match="nothing to undo"):
        bench.undo()
    with pytest.raises(WorkbenchError, match="nothing to redo"):
        bench.redo()
    with pytest.raises(WorkbenchError, match="position"):
        bench.goto(3)


def test_apply_after_undo_drops_the_redo_branch():
    model, data = make("rescat")
    bench = wb.Workbench(model, data)
    bench.apply(wb.Plan.uniform(0.5))
    bench.undo()
    bench.apply(wb.Plan.uniform(0.2))
    assert len(bench.history) == 2 and bench.history[1].plan["default"]["ratio"] == 0.2
    with pytest.raises(WorkbenchError):
        bench.redo()


def test_pruned_model_stays_plain_and_copies_pickles_saves(tmp_path):
    model, data = make("rescat")
    bench = wb.Workbench(model, data)
    bench.apply(wb.Plan.uniform(0.5, granularity="filter"))
    bench.apply(wb.Plan.global_(0.7))
    assert_plain(model)
    x = data[0][0]
    want = model(x)
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert torch.equal(clone(x), want)
        assert_plain(clone)
    torch.save(model.state_dict(), tmp_path / "m.pt")
    fresh, _ = make("rescat", seed=1)
    fresh.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
    assert torch.equal(fresh(x), want)
    assert set(model.state_dict()) == set(fresh.state_dict())  # no extra mask buffers


def test_enforce_keeps_pruned_weights_at_zero_through_training():
    model, data = make("rescat")
    bench = wb.Workbench(model, data)
    bench.apply(wb.Plan.global_(0.6))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model.train()
    for x, y in data * 3:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        wb.masks.enforce(model, bench.store)
        for name, m in bench.masks.items():
            assert (model.get_parameter(name)[m] == 0).all()
    model.eval()


def test_store_holds_compact_undo_data():
    big = torch.nn.Linear(512, 512, bias=False)
    store = wb.masks.MaskStore(big)
    store.apply_({"weight": big.weight.abs() < big.weight.abs().median()})
    model_bytes = big.weight.numel() * 4
    # half the values (0.5x) + packed undo mask (1/32x) + current bool mask (1/4x)
    assert store.nbytes <= 0.8 * model_bytes
