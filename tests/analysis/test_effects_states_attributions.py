"""States as transactions, and attributions before vs after (workbench/analysis/states.py, attributions.py)."""

import warnings

import numpy as np
import pytest
import torch
from conftest import assert_bitwise, assert_plain, snapshot
from zoo import make

import workbench as wb
from workbench.analysis.attributions import available_attributions, register_attribution, similarity
from workbench.analysis.states import StateError, at, default_pair, resolve
from workbench.errors import OutsideEditError, WorkbenchError, WorkbenchWarning


@pytest.fixture
def cnn(demo_models):
    """The demo CNN with two steps applied and the second undone (a redo branch); reset afterwards."""
    model, data = demo_models["digits-cnn"]
    dense = snapshot(model)
    bench = wb.Workbench(model, data)
    bench.apply(wb.Plan.uniform(0.5))
    bench.apply(wb.Plan.global_(0.8))
    bench.undo()
    yield bench
    bench.reset()
    assert_bitwise(model, dense)


def state_of(bench):
    return bench.store.position, len(bench.store.steps), len(bench.history), snapshot(bench.model)


def assert_same_state(bench, before):
    pos, steps, hist, snap = before
    assert (bench.store.position, len(bench.store.steps), len(bench.history)) == (pos, steps, hist)
    assert_bitwise(bench.model, snap)
    assert_plain(bench.model)


# ------------------------------------------------------------------ states


def test_at_visits_a_state_and_restores_bitwise_keeping_the_redo_branch(cnn):
    before = state_of(cnn)
    dense = cnn.history[0].metrics["accuracy"]
    for i in (0, 2, -1):
        with at(cnn, i) as j:
            assert cnn.store.position == j == resolve(cnn, i)
            if j == 0:
                assert cnn.evaluate()["accuracy"] == dense
        assert_same_state(cnn, before)


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_at_restores_on_error_and_interrupt(cnn, error):
    before = state_of(cnn)
    with pytest.raises(error):
        with at(cnn, 2):
            assert cnn.store.position == 2
            raise error("midway")
    assert_same_state(cnn, before)


def test_at_refuses_weights_edited_outside_the_store_and_changes_nothing(cnn):
    with torch.no_grad():  # a pruned weight revived by hand (e.g. training without enforce)
        name, mask = next(iter(cnn.store.masks().items()))
        cnn.model.get_parameter(name)[tuple(mask.nonzero()[0].tolist())] = 0.125
    before = state_of(cnn)
    with pytest.raises(OutsideEditError, match=name.replace(".", r"\.")), at(cnn, 0):
        pass
    assert_same_state(cnn, before)
    cnn.reset(force=True)  # the way out that writes the recorded dense values back: the edit was on a pruned weight


def test_history_indices_that_do_not_exist(cnn):
    for bad in (3, -4, 99):
        with pytest.raises(StateError, match=r"entries 0\.\.2"):
            resolve(cnn, bad)
    with pytest.raises(StateError, match="does not exist"):
        cnn.attributions("saliency", samples=2, before=5)
    with pytest.raises(StateError, match="does not exist"):
        cnn.compare_states(0, 7)
    assert default_pair(cnn) == (0, 1)
    cnn.reset()
    with pytest.raises(StateError, match="Apply a plan first"):
        cnn.robustness()


def test_compare_states_any_two_entries(cnn):
    before = state_of(cnn)
    c = cnn.compare_states(0, -1)  # dense vs the latest entry (undone, still redoable)
    assert (c.a, c.b, c.a_label, c.b_label) == (0, 2, "dense", "step 2")
    assert c.metrics_a["accuracy"] == cnn.history[0].metrics["accuracy"]
    assert c.metrics_b["accuracy"] == cnn.history[2].metrics["accuracy"]
    assert c.sparsity_a == 0 and c.sparsity_b == pytest.approx(0.8, abs=0.01)
    assert 0 <= c.agreement <= 1 and "same prediction" in str(c)
    assert cnn.compare_states(1, 1).agreement == 1.0
    assert_same_state(cnn, before)


# ------------------------------------------------------------------ attributions


def test_similarity_on_known_maps():
    a = np.array([[0.0, 1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0, 5.0]])
    s = similarity(a, a, topk=0.2)
    assert all(np.allclose(v, 1.0) for v in s.values())
    rev = similarity(a, -a[:, ::-1] + 0.0, topk=0.2)
    assert rev["topk"].tolist() == [0.0, 0.0] and (rev["cosine"] < 0).all()
    zero = similarity(a, np.zeros_like(a))
    assert all(np.allclose(v, 0.0) for v in zero.values())
    assert all(np.allclose(v, 1.0) for v in similarity(np.zeros((1, 4)), np.zeros((1, 4))).values())


@pytest.mark.parametrize("method", available_attributions())
def test_a_state_compared_with_itself_has_similarity_one(cnn, method):
    before = state_of(cnn)
    att = cnn.attributions(method, samples=4, before=1, after=1)
    assert att.attr_before.shape == (4, 1, 8, 8) and att.kind == "image"
    for key in ("spearman", "cosine", "topk"):
        assert getattr(att, key) == pytest.approx(np.ones(4), abs=1e-6), key
    assert att.agreement == 1.0
    assert_same_state(cnn, before)


def test_a_model_with_every_weight_pruned_has_near_zero_similarity(demo_models):
    model, data = demo_models["digits-mlp"]
    bench = wb.Workbench(model, data)
    try:
        params = [p for t in bench.targets for p in t.param_names() if p.endswith("weight")]
        bench.store.apply_({p: torch.ones_like(model.get_parameter(p), dtype=torch.bool) for p in params})
        snap = snapshot(model)
        att = bench.attributions("integrated_gradients", samples=8, before=0, after=1)
        assert np.abs(att.attr_after).max() == 0  # the output no longer depends on the input
        for key in ("spearman", "cosine", "topk"):
            assert np.abs(getattr(att, key)).max() < 0.05, key
        assert_bitwise(model, snap)
    finally:
        bench.reset()


def test_targets_default_to_the_dense_prediction_or_the_label(cnn):
    att = cnn.attributions("saliency", samples=6)
    assert (att.before, att.after) == (0, 1)
    assert np.array_equal(att.targets, att.pred_before)  # before = dense here
    lab = cnn.attributions("saliency", samples=6, target="label", before=1, after=2)
    assert np.array_equal(lab.targets, lab.labels) and lab.after_label == "step 2"
    d = cnn.attributions("saliency", samples=6, before=1, after=2)
    assert np.array_equal(d.targets, att.pred_before)
    assert set(d.to_dict()) >= {"spearman", "summary", "attr_after"}


@pytest.mark.parametrize("name", ["digits-mlp", "digits-cnn", "digits-resnet", "digits-lstm", "digits-transformer"])
def test_attributions_on_every_demo_model(demo_models, name):
    model, data = demo_models[name]
    bench = wb.Workbench(model, data)
    try:
        bench.apply(wb.Plan.uniform(0.5))
        snap = snapshot(model)
        att = bench.attributions("integrated_gradients", samples=3, n_steps=8)
        assert att.kind == "image" and att.attr_after.shape == (3, 1, 8, 8)
        assert np.isfinite(att.attr_before).all() and np.abs(att.attr_before).sum() > 0
        assert np.all((-1 <= att.spearman) & (att.spearman <= 1))
        assert_bitwise(model, snap)
        assert_plain(model)
    finally:
        bench.reset()


def test_sequences_and_token_inputs():
    model, data = make("lstm")  # (B, 6 steps, 8 features)
    bench = wb.Workbench(model, data)
    bench.apply(wb.Plan.uniform(0.5))
    att = bench.attributions("saliency", samples=4)
    assert att.kind == "sequence" and att.attr_after.shape == (4, 6, 8)
    model, data = make("tied")  # integer tokens through an nn.Embedding
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WorkbenchWarning)
        bench = wb.Workbench(model, data)
    bench.apply(wb.Plan.uniform(0.5))
    snap = snapshot(model)
    for method in ("integrated_gradients", "occlusion"):
        att = bench.attributions(method, samples=4)
        assert att.kind == "tokens" and att.attr_after.shape == (4, 5) and att.inputs.dtype == np.int64
    assert_bitwise(model, snap)
    assert_plain(model)


class NoEmbedding(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(5, 3)

    def forward(self, x):
        return self.fc(x.float())


def test_integer_inputs_without_an_embedding_say_what_to_do():
    x = torch.randint(0, 9, (16, 5))
    bench = wb.Workbench(NoEmbedding(), [(x, torch.randint(0, 3, (16,)))])
    bench.apply(wb.Plan.uniform(0.5))
    with pytest.raises(WorkbenchError, match="embedding="):
        bench.attributions("saliency", samples=4)


def test_bad_attribution_input(cnn):
    with pytest.raises(WorkbenchError, match="saliency"):
        cnn.attributions("salency", samples=2)
    with pytest.raises(WorkbenchError, match="positive integer"):
        cnn.attributions("saliency", samples=0)
    with pytest.raises(WorkbenchError, match="target"):
        cnn.attributions("saliency", samples=2, target="nope")
    with pytest.warns(WorkbenchWarning, match="holds only 360"):
        att = cnn.attributions("saliency", samples=10_000)
    assert att.n == 360


def test_an_attribution_that_fails_or_is_stopped_midway_leaves_the_model_as_it_was(cnn):
    calls = []

    def flaky(forward, x, target, baseline, seed, **kw):
        calls.append(1)
        if len(calls) == 2:  # the second state, while the store sits at the other entry
            raise RuntimeError("boom")
        return x * 0

    register_attribution("flaky-test", flaky, overwrite=True)
    before = state_of(cnn)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            cnn.attributions("flaky-test", samples=2, before=0, after=2)
        assert_same_state(cnn, before)

        def stop(done, total):
            if done == 2:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            cnn.attributions("saliency", samples=2, before=2, after=0, progress=stop)
        assert_same_state(cnn, before)
    finally:
        from workbench.analysis import attributions as mod

        mod._METHODS.pop("flaky-test")
