"""Workbench.prune_llm: one history step, undone bitwise (SparseGPT's updated weights too), all or nothing."""

from __future__ import annotations

import time
import warnings

import pytest
import torch
from conftest import assert_bitwise, assert_plain, snapshot

import workbench as wb
from workbench.llm import register_method

from .models import MODELS, batches

pytestmark = pytest.mark.usefixtures("one_thread")


def _bench(family: str = "llama", layers: int = 2):
    model = MODELS[family](layers=layers)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model, wb.Workbench(model, batches(n=1))


@pytest.mark.parametrize(("family", "method", "pattern"), [
    ("llama", "sparsegpt", "unstructured"),
    ("llama", "sparsegpt", "2:4"),
    ("gpt2", "sparsegpt", "4:8"),
    ("opt", "wanda", "unstructured"),
    ("llama", "magnitude", "2:4"),
])  # fmt: skip
def test_one_step_undone_and_redone_bitwise(family, method, pattern):
    model, bench = _bench(family)
    dense = snapshot(model)
    entry = bench.prune_llm(method=method, pattern=pattern, calib=batches())
    pruned = snapshot(model)
    assert entry.index == 1 and len(bench.history) == 2 and bench.store.position == 1
    assert entry.metric is not None and entry.metric == bench.evaluate()["metric"]
    assert bench.last_llm.method == method and bench.last_llm.pattern == pattern
    for name, mask in bench.masks.items():
        assert torch.equal(model.get_parameter(name) == 0, mask), name
    if method == "sparsegpt":  # kept weights changed
        changed = [n for n, m in bench.masks.items() if not torch.equal(pruned[n][~m], dense[n][~m])]
        assert changed
    bench.undo()
    assert_bitwise(model, dense)
    bench.redo()
    assert_bitwise(model, pruned)
    bench.reset()
    assert_bitwise(model, dense)
    assert_plain(model)


def test_a_second_step_on_top_keeps_the_first_and_both_undo_bitwise():
    model, bench = _bench()
    dense = snapshot(model)
    bench.prune_llm(0.3, method="sparsegpt", calib=batches())
    first = snapshot(model)
    masks = bench.masks
    bench.prune_llm(0.6, method="sparsegpt", owl=True, calib=batches())
    for name, m in masks.items():
        assert bool(bench.masks[name][m].all()), name  # what the first step pruned stays pruned
    bench.undo()
    assert_bitwise(model, first)
    bench.undo()
    assert_bitwise(model, dense)


@pytest.mark.parametrize("undo", [True, False])
def test_a_bench_state_prunes_and_records_what_the_bench_records(undo):
    from workbench.llm.step import prune_llm

    model, bench = _bench()
    twin, other = _bench()
    entry = bench.prune_llm(method="sparsegpt", pattern="2:4", calib=batches(), undo=undo)
    entry_state = prune_llm(other.state, method="sparsegpt", pattern="2:4", calib=batches(), undo=undo)
    same = ("index", "label", "kind", "plan", "layers", "metric", "sparsity", "removed", "active")
    assert [getattr(entry, k) for k in same] == [getattr(entry_state, k) for k in same]
    assert len(other.history) == len(bench.history) and other.last_llm.label() == bench.last_llm.label()
    assert_bitwise(twin, snapshot(model))
    if undo:
        other.undo()
        bench.undo()
        assert_bitwise(twin, snapshot(model))


class Boom(RuntimeError):
    pass


@pytest.mark.parametrize("error", [Boom, KeyboardInterrupt])
@pytest.mark.parametrize("updates", [False, True])
def test_an_error_in_the_middle_leaves_the_model_and_history_as_before(error, updates):
    model, bench = _bench(layers=3)
    bench.prune_llm(method="wanda", calib=batches())
    before, history = snapshot(model), bench.history
    seen = []

    @register_method(f"fails-on-block-2-{updates}", needs="hessian", updates=updates, overwrite=True)
    def _fails(weight, stats, sparsity, pattern, current, options):
        """Prune the first half, then fail in block 2."""
        seen.append(bench.store.in_transaction)
        if len(seen) > 14:  # 7 layers per block: blocks 0 and 1 were written
            raise error("boom")
        weight.mul_(1.5)
        mask = torch.zeros(weight.shape, dtype=torch.bool)
        mask[:, : weight.shape[1] // 2] = True
        return mask

    with pytest.raises(error):
        bench.prune_llm(method=f"fails-on-block-2-{updates}", calib=batches())
    assert all(seen)  # the method ran inside the bench's transaction (its lock held)
    assert_bitwise(model, before)
    assert bench.history == history and bench.store.position == 1
    assert_plain(model)
    bench.undo()  # the earlier step still undoes


def test_a_failing_evaluation_drops_the_step(monkeypatch):
    model, bench = _bench()
    before = snapshot(model)
    bench.report()  # the dense metrics are kept: the evaluation that fails is the one after the step

    def fail(*a, **k):
        raise Boom("evaluation")

    monkeypatch.setattr(wb.State, "evaluate", fail)  # what the history evaluates with (bench.evaluate calls it too)
    with pytest.raises(Boom):
        bench.prune_llm(method="sparsegpt", calib=batches())
    assert_bitwise(model, before)
    assert bench.store.position == 0 and len(bench.history) == 1


def test_undo_false_adopts_the_pruned_model_with_its_masks():
    model, bench = _bench()
    bench.apply(wb.Plan.uniform(0.2), evaluate=False)
    entry = bench.prune_llm(method="sparsegpt", calib=batches(), undo=False)
    assert entry.index == 0 and bench.store.position == 0 and len(bench.history) == 1
    assert entry.metrics is not None and entry.sparsity >= 0.4
    for name in bench.last_llm.layers:
        mask = bench.masks[f"{name}.weight"]
        assert torch.equal(mask, model.get_parameter(f"{name}.weight") == 0), name
    assert_plain(model)


def test_calibration_defaults_to_the_benchs_data_and_missing_data_is_an_error():
    _, bench = _bench()
    bench.prune_llm(method="wanda", nsamples=2, evaluate=False)
    assert bench.last_llm.sequences == 2 and bench.last_llm.tokens == 24
    plain = wb.Workbench(MODELS["llama"]())
    with pytest.raises(wb.DataError, match="calib="):
        plain.prune_llm()


def test_prune_llm_calls_its_target_ratio_like_every_plan_and_the_old_name_warns():
    import inspect

    from workbench.llm import step

    facade = inspect.signature(wb.Workbench.prune_llm).parameters
    assert "ratio" in facade and "sparsity" not in facade
    # help(bench.prune_llm) shows every option the step takes
    assert set(facade) - {"self", "ratio"} == set(inspect.signature(step.prune_llm).parameters) - {"bench", "sparsity"}
    with pytest.raises(TypeError, match="both sparsity="):
        wb.Workbench.prune_llm(None, sparsity=0.5, ratio=0.5)


@pytest.mark.parametrize("method", ["sparsegpt", "wanda"])
def test_the_run_is_recorded_without_writing_the_weights_again(monkeypatch, method):
    from workbench.masks import MaskStore

    model, bench = _bench()
    dense = snapshot(model)

    def no_second_write(*a, **k):
        raise AssertionError("prune_llm wrote the step a second time through MaskStore.apply_")

    monkeypatch.setattr(MaskStore, "apply_", no_second_write)
    t0 = time.perf_counter()
    entry = bench.prune_llm(method=method, calib=batches())
    took = time.perf_counter() - t0
    pruned = snapshot(model)
    assert entry.index == 1 and entry.removed == sum(int(m.sum()) for m in bench.masks.values())
    assert 0.0 < entry.seconds <= took  # the whole run, from before calibration to the recorded step
    bench.undo()
    assert_bitwise(model, dense)
    bench.redo()
    assert_bitwise(model, pruned)
