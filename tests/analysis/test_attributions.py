"""analysis/attributions.py: attributions before vs after: similarity measures on known maps, a state against itself,
a fully pruned model, every demo model, sequences and tokens, bad input, failures leave the model as it was."""

import warnings

import numpy as np
import pytest
import torch
from conftest import assert_bitwise, assert_plain, snapshot
from zoo import make

import workbench as wb
from workbench.analysis.attributions import available_attributions, register_attribution, similarity
from workbench.errors import WorkbenchError, WorkbenchWarning

from .conftest import assert_same_state, state_of


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
        again = similarity(att.attr_before.reshape(3, -1), att.attr_after.reshape(3, -1), att.topk_share)
        assert np.array_equal(att.spearman, again["spearman"])  # the result's rho is that of the maps it holds
        # half of each layer's smallest weights: the pixel ranking stays alike (shipped weights: rho 0.42 to 0.96)
        assert (att.spearman > 0).all(), att.spearman
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


@pytest.mark.parametrize("progress", [None, False, True])
def test_progress_takes_what_sensitivity_takes(cnn, progress):
    """False, None or True (a tqdm bar) as for sensitivity (False and True raised "'bool' object is not callable"),
    or a callback that hears 0..total; none of them changes the result."""
    calls = []
    ref = cnn.attributions("saliency", samples=2, progress=lambda done, total: calls.append((done, total)))
    att = cnn.attributions("saliency", samples=2, progress=progress)
    assert calls == [(0, 3), (1, 3), (2, 3), (3, 3)]  # the targets, then each of the two states
    assert np.array_equal(att.attr_before, ref.attr_before) and np.array_equal(att.attr_after, ref.attr_after)
