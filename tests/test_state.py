"""`workbench.state`: a bench's `State` reads the live objects, evaluates like the bench, and `as_state` is the one
answer to "is this a bench?"."""

import pytest
import torch
from conftest import assert_bitwise, snapshot
from zoo import make

import workbench as wb
from workbench.state import FixedMasks, State, as_state


def test_state_is_the_live_bench_not_a_copy():
    model, data = make("rescat")
    bench = wb.Workbench(model, data, seed=3, name="r")
    state = bench.state
    for attr in ("model", "adapter", "targets", "groups", "store", "data", "calib", "train", "metric", "seed",
                 "example_inputs", "name"):  # fmt: skip
        assert getattr(state, attr) is getattr(bench, attr), attr
    assert as_state(state) is state and as_state(bench).store is state.store  # a bench gives a fresh State
    with pytest.raises(AttributeError):
        state.model = None  # frozen
    assert state.evaluate() == bench.evaluate()
    bench.apply(wb.Plan.uniform(0.5))
    assert state.history == bench.history and state.current == bench.current  # read when asked
    assert state.evaluate() == bench.evaluate()
    plan = wb.Plan.uniform(0.7)
    assert all(torch.equal(m, bench.preview(plan).masks[n]) for n, m in state.preview(plan).masks.items())


def test_analyses_take_a_state_and_leave_the_model_bitwise():
    model, data = make("rescat")
    bench = wb.Workbench(model, data)
    bench.apply(wb.Plan.uniform(0.4))
    before = snapshot(model)
    state = bench.state
    from workbench.analysis.entropy import entropy
    from workbench.analysis.profile import profile
    from workbench.sparse import compile

    assert entropy(state).layers == bench.entropy().layers
    assert profile(state, repeats=1).layers == bench.profile(repeats=1).layers
    fast = compile(state, backend="dense")[0]
    x = bench.example_inputs
    assert torch.equal(fast(x), compile(bench, backend="dense")[0](x))
    assert wb.quantize(state) is not model
    assert wb.monitor(state, "dense", data).agreement == wb.monitor(bench, "dense", data).agreement
    assert_bitwise(model, before)


def test_a_state_without_a_bench_has_a_lone_dense_entry():
    model, data = make("rescat")
    bench = wb.Workbench(model, data)
    masks = {n: torch.zeros_like(p, dtype=torch.bool) for n, p in model.named_parameters()}
    state = State(model, bench.adapter, bench.targets, bench.groups, FixedMasks(masks), data)
    assert [e.label for e in state.history] == ["dense"] and state.current.index == 0
    assert state.store.masks().keys() == masks.keys() and state.store.position == 0


@pytest.mark.parametrize("obj", [42, "bench", None, torch.nn.Linear(2, 2)])
def test_as_state_names_the_type_and_the_fix(obj):
    with pytest.raises(wb.NotABenchError, match=rf"got {type(obj).__name__} \(.*wb\.Workbench\(model, data\)") as e:
        as_state(obj)
    assert isinstance(e.value, TypeError)


def test_entry_points_keep_their_own_errors_for_what_is_not_a_bench():
    from workbench.quantize import QuantizationError
    from workbench.sparse import CompileError

    with pytest.raises(CompileError, match=r"compile takes a Workbench or an nn\.Module, got int"):
        wb.sparse.compile(42)
    with pytest.raises(QuantizationError, match=r"quantize needs a Workbench or an nn\.Module, got str"):
        wb.quantize("model")
    with pytest.raises(wb.WorkbenchError, match=r"the pruned model must be an nn\.Module or a Workbench, got int"):
        wb.monitor(42, "dense", [torch.randn(2, 3)])
    with pytest.raises(wb.WorkbenchError, match=r"compare takes an nn\.Module or a Workbench, got int"):
        wb.compare(42, None, ["magnitude"], [0.5])
    model, data = make("rescat")
    bench = wb.Workbench(model, data)
    alone = State(model, bench.adapter, bench.targets, bench.groups, bench.store, data)  # no bench's history
    with pytest.raises(wb.WorkbenchError, match="compare applies and drops steps in a bench's history"):
        wb.compare(alone, None, ["magnitude"], [0.5])


def test_training_takes_a_state_and_records_in_its_bench():
    model, data = make("rescat")
    bench = wb.Workbench(model, data, train=data)
    bench.apply(wb.Plan.uniform(0.5))
    pruned = snapshot(model)
    r = wb.training.finetune(bench.state, 1, progress=False)
    assert bench.current.kind == "finetune" and r.entry == bench.current.index == 2
    bench.undo()
    assert_bitwise(model, pruned)


def test_a_state_without_a_bench_cannot_record_a_step():
    model, data = make("rescat")
    bench = wb.Workbench(model, data)
    state = State(model, bench.adapter, bench.targets, bench.groups, bench.store, data)
    with pytest.raises(wb.NotABenchError, match="no bench whose history could record the step 'x'"):
        state.record({}, label="x")
    with pytest.raises(wb.NotABenchError, match="no bench whose history could record the plan"):
        state.apply(wb.Plan.uniform(0.5))
    assert state.store.position == 0 and not state.store.steps


def test_a_bench_state_records_in_the_bench_history():
    model, data = make("rescat")
    bench = wb.Workbench(model, data)
    state = bench.state
    assert state.log is bench.state.log  # every State of a bench shares its one history
    entry = state.apply(wb.Plan.uniform(0.5, granularity="filter"), label="half")
    assert entry == bench.current and bench.history[1].label == "half" and entry.layers  # per-layer plans kept
    mask = {n: m.clone() for n, m in bench.preview(wb.Plan.uniform(0.7)).masks.items()}
    assert state.record(mask, label="mine", kind="edit").index == 2 == bench.current.index
    assert [e.kind for e in bench.history] == ["prune", "prune", "edit"]
