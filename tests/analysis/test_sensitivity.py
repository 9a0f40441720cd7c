import copy
import importlib
import math
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from conftest import assert_bitwise, assert_plain, snapshot
from zoo import make

import workbench as wb
from workbench.adapter import Adapter
from workbench.analysis._refine import fill_map
from workbench.analysis.sensitivity import AnalysisError, SensitivityResult, rows_for
from workbench.errors import DataError, GranularityError, TargetError, WorkbenchError
from workbench.masks import n_to_prune

RATIOS = (0.2, 0.5, 0.8)


def distiller(model, data, layer_params, ratio, metric="accuracy"):
    """The naive loop: deepcopy, rank the layer's weights by |w| from scratch, zero, evaluate."""
    m = copy.deepcopy(model)
    scores = torch.cat([m.get_parameter(p).detach().abs().reshape(-1) for p in layer_params])
    k = n_to_prune(ratio, scores.numel())
    chosen = torch.zeros(scores.numel(), dtype=torch.bool)
    chosen[torch.argsort(scores, stable=True)[:k]] = True
    i = 0
    with torch.no_grad():
        for p in layer_params:
            w = m.get_parameter(p)
            w.masked_fill_(chosen[i : i + w.numel()].view(w.shape), 0)
            i += w.numel()
    return wb.evaluate(m, data, metric)["metric"] - wb.evaluate(model, data, metric)["metric"]


@pytest.mark.parametrize("arch", ["rescat", "lstm", "mha"])
@pytest.mark.parametrize("metric", ["accuracy", "loss"])
def test_exact_scan_equals_a_distiller_style_loop(arch, metric):
    model, data = make(arch)
    bench = wb.Workbench(model, data, metric=metric)
    snap = snapshot(model)
    s = bench.sensitivity(RATIOS, criterion="l1", progress=False)
    assert s.values.shape == (len(s.layers), 3) and s.complete
    for i, layer in enumerate(s.layers):
        params = bench.targets[layer].param_names()
        for j, r in enumerate(RATIOS):
            assert s.values[i, j] == pytest.approx(distiller(model, data, params, r, metric), abs=1e-6)
    assert_bitwise(model, snap)
    assert_plain(model)


def test_structured_rows_prune_whole_coupled_groups_and_match_the_loop():
    model, data = make("rescat")
    bench = wb.Workbench(model, data, metric="loss")
    s = bench.sensitivity(RATIOS, granularity="filter", criterion="l1", progress=False)
    # stem, a, b and dw share channels (residual add, concat, depthwise): one row, never one side alone
    i = s.row("a")
    assert set(s.members[i]) == {"stem.0", "a", "b", "dw"} and s.row("stem.0") == i
    rows = rows_for(bench, "filter", "l1")
    for j, r in enumerate(RATIOS):
        m = copy.deepcopy(model)
        with torch.no_grad():
            for k, mask in rows[i].ranking.masks(r).items():
                m.get_parameter(k).masked_fill_(mask, 0)
        want = wb.evaluate(m, data, "loss")["loss"] - wb.evaluate(model, data, "loss")["loss"]
        assert s.values[i, j] == pytest.approx(want, abs=1e-6)
    # it is the same as applying a plan to those layers, then undoing
    plan = wb.Plan({p: wb.LayerPlan(0.5, "filter", "l1") for p in s.members[i]})
    bench.apply(plan)
    assert bench.current.metrics["loss"] - bench.history[0].metrics["loss"] == pytest.approx(s.values[i, 1], abs=1e-6)


def test_suffix_engine_and_full_clones_agree_and_threads_do_not_change_numbers():
    model, data = make("rescat")
    bench = wb.Workbench(model, data)
    a = bench.sensitivity(RATIOS, engine="suffix", progress=False)
    b = bench.sensitivity(RATIOS, engine="full", progress=False)
    with ThreadPoolExecutor(3) as pool:
        c = bench.sensitivity(RATIOS, executor=pool, progress=False)
    assert "suffix" in a.engine and "clones" in b.engine
    np.testing.assert_allclose(a.values, b.values, atol=1e-6)
    np.testing.assert_array_equal(a.values, c.values)


class _Branchy(torch.nn.Module):
    """Data-dependent control flow (fx cannot trace it) and keyword inputs."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = torch.nn.Linear(6, 12), torch.nn.Linear(12, 12), torch.nn.Linear(12, 3)

    def forward(self, x, scale=None):
        h = torch.relu(self.a(x))
        if h.sum() > 0:  # a branch on a value
            h = torch.relu(self.b(h)) + h
        return self.c(h * (1.0 if scale is None else scale))


def test_replay_engine_runs_hf_models_and_untraceable_ones_and_equals_full_clones():
    import transformers as T

    torch.manual_seed(0)
    cfg = T.BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=32, num_labels=3)  # fmt: skip
    bert = T.BertForSequenceClassification(cfg).eval()
    g = torch.Generator().manual_seed(0)
    text = [{"input_ids": (ids := torch.randint(0, 100, (4, 12), generator=g)), "attention_mask": torch.ones_like(ids),
             "labels": torch.randint(0, 3, (4,), generator=g)} for _ in range(2)]  # fmt: skip
    branchy = _Branchy().eval()
    kw = [({"x": torch.randn(8, 6, generator=g), "scale": torch.full((8, 1), 0.5)}, torch.randint(0, 3, (8,), generator=g))
          for _ in range(2)]  # fmt: skip
    for model, data in ((bert, text), (branchy, kw)):
        bench = wb.Workbench(model, data, metric="loss")
        snap = snapshot(model)
        a = bench.sensitivity(RATIOS, engine="replay", progress=False)
        b = bench.sensitivity(RATIOS, engine="full", progress=False)
        c = bench.sensitivity(RATIOS, progress=False)  # "auto": replay where it measured faster, else full
        assert a.engine.startswith("replay") and "clones" in b.engine
        np.testing.assert_allclose(c.values, b.values, atol=1e-6, rtol=0)
        np.testing.assert_allclose(a.values, b.values, atol=1e-6, rtol=0)
        assert_bitwise(model, snap)
        assert_plain(model)
    # over its memory bound the runner refuses (the scan then runs full forwards)
    from workbench.analysis._replay import ReplayRunner

    with pytest.raises(MemoryError, match="exceed"):
        ReplayRunner(bert, text, [("bert.encoder.layer.1.output.dense",)], max_bytes=16)


def test_scan_on_an_already_pruned_model_measures_from_the_current_state():
    model, data = make("rescat")
    bench = wb.Workbench(model, data, metric="loss")
    bench.apply(wb.Plan.uniform(0.5))
    snap = snapshot(model)
    s = bench.sensitivity((0.3, 0.5, 0.7), progress=False)
    assert s.baseline == pytest.approx(bench.evaluate()["loss"])
    assert np.all(s.values[:, :2] == 0)  # at or below the current sparsity nothing more goes
    assert np.any(s.values[:, 2] != 0)
    assert_bitwise(model, snap)


def test_interrupting_returns_the_partial_result_and_the_model_is_unchanged():
    model, data = make("rescat")
    bench = wb.Workbench(model, data)
    snap = snapshot(model)

    def stop(done, total):
        if done == 5:
            raise KeyboardInterrupt

    with pytest.warns(UserWarning, match="interrupted"):
        s = bench.sensitivity(RATIOS, progress=stop, executor=ThreadPoolExecutor(1))
    assert not s.complete and np.isnan(s.values).any() and (~np.isnan(s.values)).sum() >= 5
    assert_bitwise(model, snap)
    assert_plain(model)


def test_metric_returning_nan_names_the_point_and_keeps_the_partial_result():
    model, data = make("rescat")
    calls = []

    def flaky(m, d):
        calls.append(1)
        return math.nan if len(calls) > 3 else 0.5

    bench = wb.Workbench(model, data, metric=flaky)
    snap = snapshot(model)
    with pytest.raises(AnalysisError, match=r"returned nan for layer '.+' at ratio") as e:
        bench.sensitivity(RATIOS, executor=ThreadPoolExecutor(1), progress=False)
    assert isinstance(e.value.partial, SensitivityResult)
    assert_bitwise(model, snap)


def test_bad_input():
    model, data = make("rescat")
    bench = wb.Workbench(model, data)
    with pytest.raises(WorkbenchError, match="at least one ratio"):
        bench.sensitivity([])
    with pytest.raises(WorkbenchError, match=r"\[0, 1\)"):
        bench.sensitivity([0.5, 1.2])
    with pytest.raises(TargetError, match="Did you mean"):
        bench.sensitivity(layers=["stm.0"])
    with pytest.raises(GranularityError, match=r"'head'.*outputs of the model"):
        bench.sensitivity(granularity="neuron", layers=["head"])
    with pytest.raises(DataError):
        bench.sensitivity(data=[])


def test_estimate_is_one_pass_in_loss_units_and_tracks_the_exact_scan():
    from scipy.stats import spearmanr

    model, data = wb.demo.load("digits-mlp")
    bench = wb.Workbench(model, data, metric="loss")
    snap = snapshot(model)
    exact = bench.sensitivity(np.linspace(0.1, 0.9, 9), progress=False)
    est = bench.sensitivity(np.linspace(0.1, 0.9, 9), mode="estimate")
    est2 = bench.sensitivity(np.linspace(0.1, 0.9, 9), mode="estimate", second_order=True)
    assert est.mode == "estimate" and est.metric_name == "loss (estimated)" and est.values.shape == exact.values.shape
    # shipped weights: rho 0.952 (first order) and 0.958 (second order)
    assert spearmanr(exact.values.ravel(), est.values.ravel())[0] > 0.8
    assert spearmanr(exact.values.ravel(), est2.values.ravel())[0] > 0.8
    assert all(p.grad is None for p in model.parameters())  # gradients were not left on the model
    assert_bitwise(model, snap)


def test_result_is_plain_data():
    model, data = make("mha")
    s = wb.Workbench(model, data).sensitivity(RATIOS, progress=False)
    back = SensitivityResult.from_dict(s.to_dict())
    np.testing.assert_array_equal(back.values, s.values)
    assert back.layers == s.layers and s.predict(s.layers[0], 0.0) == 0.0
    assert s.predict(s.layers[0], 0.5) == pytest.approx(s.values[0, 1])


@pytest.fixture(scope="module")
def cluster():
    """Two worker processes (not threads): what a scan on a real Dask cluster sees."""
    distributed = pytest.importorskip("dask.distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=50
        ) as c,
        distributed.Client(c) as client,
    ):
        yield client


def test_a_scan_on_dask_worker_processes_equals_the_local_scan(cluster):
    model, data = wb.demo.load("digits-cnn")
    bench = wb.Workbench(model, data)
    before = snapshot(model)
    local = bench.sensitivity(RATIOS, granularity="filter", criterion="l1", progress=False)
    for executor in (cluster, cluster.get_executor()):
        remote = bench.sensitivity(RATIOS, granularity="filter", criterion="l1", executor=executor, progress=False)
        assert remote.complete and remote.layers == local.layers and "dask" in remote.engine
        np.testing.assert_allclose(remote.values, local.values, atol=1e-6, rtol=0)
    assert_bitwise(model, before)


def test_a_worker_that_dies_mid_scan_has_its_points_rerun(cluster):
    import os

    model, data = wb.demo.load("digits-mlp")
    bench = wb.Workbench(model, data)
    ratios = np.linspace(0.1, 0.9, 9)
    local = bench.sensitivity(ratios, progress=False)
    import signal

    pids = cluster.run(os.getpid)  # worker address -> its process
    killed = []

    def kill_one(done, total):
        if done == 2 and not killed:  # a point is back: the others are queued or running on both workers
            pid = pids[sorted(pids)[0]]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    remote = bench.sensitivity(ratios, executor=cluster, progress=kill_one)
    assert killed and remote.complete
    np.testing.assert_allclose(remote.values, local.values, atol=1e-6, rtol=0)
    cluster.wait_for_workers(2, timeout=120)  # the nanny restarts the worker


@pytest.mark.parametrize("granularity, ratios", [("2:4", [0.5]), ("block4x4", [0.25, 0.5, 0.75])])
def test_patterned_scans_measure_the_pattern_a_plan_applies(granularity, ratios):
    """An N:M or block scan measures what applying that pattern to the layer does (not unstructured pruning)."""
    model, data = wb.demo.load("digits-mlp")
    bench = wb.Workbench(model, data)
    before = snapshot(model)
    sens = bench.sensitivity(ratios, granularity=granularity, progress=False)
    dense = wb.evaluate(model, bench.calib)["accuracy"]
    for i, name in enumerate(sens.layers):
        for j, r in enumerate(ratios):
            bench.apply(wb.Plan({name: wb.LayerPlan(r, granularity, "magnitude")}), evaluate=False)
            expect = wb.evaluate(model, bench.calib)["accuracy"] - dense
            bench.undo()
            assert sens.values[i, j] == pytest.approx(expect, abs=1e-6), (name, r)
    assert_bitwise(model, before)
    unstructured = bench.sensitivity(ratios, layers=list(sens.layers), progress=False)
    assert not np.allclose(unstructured.values, sens.values)  # a different pattern, a different curve


def test_n_m_scan_at_another_ratio_says_the_pattern_fixes_it():
    model, data = wb.demo.load("digits-mlp")
    bench = wb.Workbench(model, data)
    with pytest.raises(GranularityError, match=r"sparsity is 0.5; scan it with ratios=\[0.5\]"):
        bench.sensitivity([0.3, 0.5], granularity="2:4", progress=False)


@pytest.mark.parametrize("name", ["digits-mlp", "digits-cnn", "digits-lstm", "digits-transformer"])
def test_vectorised_per_sample_fisher_equals_the_per_sample_loop(name, demo_models, monkeypatch):
    S = importlib.import_module("workbench.analysis.sensitivity")  # the package exports a function of that name

    model, data = demo_models[name]
    x, y = next(iter(data.calib))
    x, y = x[:24], y[:24]
    names = [n for n, p in model.named_parameters() if p.dim() > 1]
    params = [model.get_parameter(n) for n in names]
    ad = Adapter(model, task="classification")
    used = []
    real = torch.func.vmap
    monkeypatch.setattr(torch.func, "vmap", lambda *a, **k: used.append(1) or real(*a, **k))
    with torch.enable_grad():
        fast = S._squared_sample_grads(ad, model.eval(), names, params, x, y)
        assert used  # the vectorised path ran (the LSTM's falls back inside it)
        monkeypatch.setattr(torch.func, "vmap", None)  # the fallback: one backward pass per sample
        slow = S._squared_sample_grads(ad, model, names, params, x, y)
    for n, a, b in zip(names, fast, slow):
        # float32 gradients summed in another order: equal to ~1e-5 of the largest entry
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5 * float(b.abs().max())), n


# ---------------------------------------------------------------- large rows: selection without a full sort
@pytest.mark.parametrize("signed", [False, True])
def test_prefix_ranking_selects_what_a_stable_argsort_selects(signed, monkeypatch):
    from workbench.analysis import _ranking

    monkeypatch.setattr(_ranking, "SORT_BELOW", 100)  # the bucketed path, on a small row
    g = torch.Generator().manual_seed(0)
    a = torch.randn(60, 70, generator=g)
    a = a if signed else a.abs()
    a[:5] = 0.0  # a block of ties
    a[10, :30] = -math.inf if signed else 0.0  # already pruned weights score -inf
    a[20:22] = 0.5  # more ties, in the middle
    if signed:
        a[30, :7] = -0.0  # equal to 0.0 for the sort
    b = torch.randn(900, generator=g).round()  # a second tensor of the row, many ties
    b = b if signed else b.abs()
    r = _ranking.PrefixRanking(["a", "b"], [a, b])
    assert r._ids is not None
    flat = torch.cat([a.reshape(-1), b])
    order = torch.argsort(flat, stable=True)
    vals = torch.randn(flat.numel(), dtype=torch.float64, generator=g)
    ks = [0, 1, 7, 300, 350, 2000, 2500, flat.numel() - 1]
    for k, s in zip(ks, r.prefix_sums(vals, ks)):
        want = torch.zeros(flat.numel(), dtype=torch.bool)
        want[order[:k]] = True
        assert torch.equal(r.chosen(k), want), k
        assert s == pytest.approx(float(vals[want].sum()), abs=1e-9)
    masks = r.masks(0.4)
    assert masks["a"].shape == a.shape and masks["b"].shape == b.shape
    assert torch.equal(torch.cat([masks["a"].reshape(-1), masks["b"]]), r.chosen(n_to_prune(0.4, flat.numel())))
    assert torch.equal(r.order, order)


def test_rows_of_single_weights_mask_what_a_plan_masks():
    from workbench.masks.select import weight_ranking

    model, data = wb.demo.load("digits-mlp")
    bench = wb.Workbench(model, data)
    for row in rows_for(bench, "weight", "l1"):
        t = bench.targets[row.label]
        ref = weight_ranking(model, bench.store, [(t, p) for p in t.param_names()], "l1", bench.seed)
        for r in (0.1, 0.5, 0.9):
            got, want = row.ranking.masks(r), ref.masks(r)
            assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)


@pytest.mark.parametrize("granularity", ["2:4", "block4x4", "cols-scan"])
def test_rows_of_a_per_tensor_pattern_mask_what_a_plan_masks(granularity):
    """A scan follows the granularity's own selection (its mask_fn), also for one registered by a user: a pattern
    the scan did not know used to be scanned as single weights."""
    from workbench.masks import Granularity, register_granularity, unregister_granularity

    def first_columns(scores, ratio, current, g):
        mask = torch.zeros_like(scores, dtype=torch.bool)
        mask[:, : round(ratio * scores.shape[1])] = True
        return mask

    register_granularity(Granularity("cols-scan", "first columns", ("linear",), False, mask_fn=first_columns))
    try:
        model, data = wb.demo.load("digits-mlp")
        bench = wb.Workbench(model, data)
        ratios = (0.5,) if granularity == "2:4" else (0.25, 0.5)
        rows = rows_for(bench, granularity, "l1")
        assert rows
        for row in rows:
            for r in ratios:
                got = row.ranking.masks(r)
                want = bench.preview(wb.Plan({row.label: wb.LayerPlan(r, granularity, "l1")})).masks
                assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    finally:
        unregister_granularity("cols-scan")


# ---------------------------------------------------------------- trust and refine
def _exact_loss(bench, ratios, **kw):
    return bench.sensitivity(ratios, metric="loss", progress=False, **kw)


@pytest.mark.parametrize("arch", ["rescat", "mha"])
def test_an_estimate_says_how_far_to_trust_it(arch):
    model, data = make(arch)
    bench = wb.Workbench(model, data, metric="accuracy")
    snap = snapshot(model)
    ratios = np.linspace(0.1, 0.9, 9)
    est = bench.sensitivity(ratios, mode="estimate", progress=False)
    exact = _exact_loss(bench, ratios)
    assert est.trust is not None and 0.0 <= est.trust <= 1.0
    cells = {(i, j) for i, j, _, _ in est.checks}
    assert len(cells) == min(8, est.values.size)  # spread over the rows
    assert len({i for i, _ in cells}) == min(8, len(est.layers))
    for i, j, e, x in est.checks:  # the checked cells: the estimate's value and the exact loss change
        assert e == est.values[i, j] and x == pytest.approx(exact.values[i, j], abs=1e-6)
    assert not est.exact.any() and exact.exact.all() and exact.trust == 1.0
    back = SensitivityResult.from_dict(est.to_dict())  # plain data, trust and checks included
    assert back.trust == est.trust and back.checks == est.checks and np.array_equal(back.exact, est.exact)
    assert back.scale == pytest.approx(est.scale) and est.scale > 0
    none = bench.sensitivity(ratios, mode="estimate", trust_cells=0, progress=False)
    assert none.trust is None and none.checks == () and np.array_equal(none.values, est.values)
    assert_bitwise(model, snap)
    assert_plain(model)


def _at_a_minimum(seed=0):
    """Two linear layers fitted exactly (least squares in float64) to regression data: every gradient of the
    loss is zero at these weights, yet removing weights of either layer raises the loss."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(256, 12, generator=g, dtype=torch.float64)
    y = x @ torch.randn(12, 3, generator=g, dtype=torch.float64) + 0.1 * torch.randn(
        256, 3, generator=g, dtype=torch.float64
    )
    w1 = torch.randn(12, 12, generator=g, dtype=torch.float64)
    h = torch.cat([x @ w1.T, torch.ones(256, 1, dtype=torch.float64)], 1)
    sol = torch.linalg.lstsq(h, y).solution  # (13, 3): the output layer's weight and bias
    model = torch.nn.Sequential(torch.nn.Linear(12, 12, bias=False), torch.nn.Linear(12, 3))
    with torch.no_grad():
        model[0].weight.copy_(w1)
        model[1].weight.copy_(sol[:12].T)
        model[1].bias.copy_(sol[12])
    xs, ys = x.float(), y.float()
    return model, [(xs[i : i + 64], ys[i : i + 64]) for i in range(0, 256, 64)]


def test_trust_is_low_when_first_order_terms_vanish_at_a_minimum():
    model, data = _at_a_minimum()
    bench = wb.Workbench(model, data, metric="loss")
    ratios = np.linspace(0.1, 0.9, 9)
    with torch.enable_grad():
        loss = sum(torch.nn.functional.mse_loss(model(x), y, reduction="sum") for x, y in data)
        grads = torch.autograd.grad(loss, list(model.parameters()))
    assert max(float(gr.abs().max()) for gr in grads) < 1e-3  # at the minimum (float32 rounding aside)
    exact = _exact_loss(bench, ratios)
    assert (exact.values > 0).all() and exact.values.max() > 0.1  # removing weights hurts
    first = bench.sensitivity(ratios, mode="estimate", progress=False)
    second = bench.sensitivity(ratios, mode="estimate", second_order=True, progress=False)
    assert len(first.checks) == 8 and first.trust < 0.05  # predicts ~0 everywhere: not to be trusted
    assert {i for i, _, _, _ in first.checks} == {0, 1}  # both layers checked
    assert first.scale < 1e-3
    # the empirical Fisher at a near-perfect fit is tiny (squared residuals): it misses most of the curvature
    assert 0.0 <= second.trust <= 1.0 and second.scale < 0.1


def test_refine_run_to_the_end_is_the_exact_scan_and_fills_in_cell_by_cell():
    model, data = make("rescat")
    bench = wb.Workbench(model, data, metric="accuracy")
    snap = snapshot(model)
    ratios = np.linspace(0.1, 0.9, 9)
    exact = _exact_loss(bench, ratios)
    maps = []
    res = bench.sensitivity(ratios, mode="refine", on_update=maps.append, progress=False)
    assert bench.last_sensitivity is res
    assert res.mode == "refine" and res.metric_name == "loss" and res.complete and res.exact.all()
    np.testing.assert_allclose(res.values, exact.values, atol=1e-6, rtol=0)
    assert res.baseline == pytest.approx(exact.baseline, abs=1e-9)
    counts = [int(m.exact.sum()) for m in maps]
    assert counts[0] == len(res.checks) and counts == list(range(counts[0], res.values.size + 1))
    est = bench.sensitivity(ratios, mode="estimate", progress=False)
    for m in maps:  # every intermediate map: exact where marked, predicted from the exact cells elsewhere
        np.testing.assert_allclose(m.values[m.exact], exact.values[m.exact], atol=1e-6, rtol=0)
        np.testing.assert_array_equal(m.estimate, est.values)
        np.testing.assert_array_equal(m.values, fill_map(est.values, m.values, m.exact))
        assert np.isfinite(m.values).all()
    back = SensitivityResult.from_dict(maps[3].to_dict())  # plain data, the starting estimate included
    np.testing.assert_array_equal(back.estimate, maps[3].estimate)
    np.testing.assert_array_equal(back.exact, maps[3].exact)
    assert 0.0 <= res.trust <= 1.0
    assert_bitwise(model, snap)
    assert_plain(model)


def test_refine_stops_on_a_budget_a_time_limit_a_stop_callback_or_ctrl_c():
    model, data = make("rescat")
    bench = wb.Workbench(model, data)
    snap = snapshot(model)
    ratios = np.linspace(0.1, 0.9, 9)
    exact = _exact_loss(bench, ratios)
    n = exact.values.size
    part = bench.sensitivity(ratios, mode="refine", budget=0.5, progress=False)
    assert int(part.exact.sum()) == math.ceil(0.5 * n) and not part.complete
    calls = []
    stopped = bench.sensitivity(ratios, mode="refine", stop=lambda: len(calls) >= 4, on_update=calls.append)
    assert int(stopped.exact.sum()) == len(stopped.checks) + 3
    timed = bench.sensitivity(ratios, mode="refine", time_limit=0.0, progress=False)
    assert int(timed.exact.sum()) == len(timed.checks)

    def ctrl_c(done, total):
        if done >= 12:
            raise KeyboardInterrupt

    with pytest.warns(UserWarning, match="interrupted"):
        cut = bench.sensitivity(ratios, mode="refine", progress=ctrl_c)
    assert not cut.complete and 0 < int(cut.exact.sum()) < n
    for r in (part, stopped, timed, cut):
        np.testing.assert_allclose(r.values[r.exact], exact.values[r.exact], atol=1e-6, rtol=0)
        assert np.isfinite(r.values).all()
    assert_bitwise(model, snap)
    assert_plain(model)


def test_refine_measures_the_cells_near_the_current_ratios_first():
    model, data = make("rescat")
    bench = wb.Workbench(model, data)
    ratios = np.linspace(0.1, 0.9, 9)
    rows = bench.sensitivity(ratios, mode="estimate", trust_cells=0, progress=False).layers
    around = {rows[0]: 0.5, rows[-1]: 0.2}
    first = bench.sensitivity(ratios, mode="refine", trust_cells=0, around=around, budget=6 / (9 * len(rows)))
    got = {(int(i), int(j)) for i, j in np.argwhere(first.exact)}
    assert got == {(0, 3), (0, 4), (0, 5), (len(rows) - 1, 0), (len(rows) - 1, 1), (len(rows) - 1, 2)}
    # a plan names its ratios the same way; with none, the largest predicted changes go first
    plan = wb.Plan({rows[0]: wb.LayerPlan(0.5)})
    by_plan = bench.sensitivity(ratios, mode="refine", trust_cells=0, around=plan, budget=3 / (9 * len(rows)))
    assert {(int(i), int(j)) for i, j in np.argwhere(by_plan.exact)} == {(0, 3), (0, 4), (0, 5)}
    # with none: every row's largest ratio, rows with the larger predicted change first, then the middle ratios
    est = bench.sensitivity(ratios, mode="estimate", trust_cells=0, progress=False)
    n = len(rows)
    top = bench.sensitivity(ratios, mode="refine", trust_cells=0, budget=2 / est.values.size, progress=False)
    biggest = {(int(i), 8) for i in np.argsort(-np.abs(est.values[:, 8]), kind="stable")[:2]}
    assert {tuple(map(int, c)) for c in np.argwhere(top.exact)} == biggest
    more = bench.sensitivity(ratios, mode="refine", trust_cells=0, budget=(n + 1) / est.values.size, progress=False)
    got = {tuple(map(int, c)) for c in np.argwhere(more.exact)}
    assert {(i, 8) for i in range(n)} < got and len(got - {(i, 8) for i in range(n)}) == 1
    assert next(iter(got - {(i, 8) for i in range(n)}))[1] == 4


def test_fill_map_recovers_rows_that_grow_geometrically_from_two_exact_cells_each():
    """By construction: each row's true change is a_i * q**j (q differs per row), the estimate grows linearly and
    ranks the low ratios wrongly; with each row's largest and middle ratio measured, the prediction is the truth."""
    j = np.arange(9)
    truth = np.array([a * q**j for q, a in [(1.9, 1e-4), (1.5, 1e-2), (2.2, 1e-6), (1.2, 1e-1)]])
    estimate = np.outer([1.0, 3.0, 0.5, 2.0], j + 1.0)[:, ::-1].copy()  # decreasing: every shape is wrong
    exact = np.zeros(truth.shape, dtype=bool)
    exact[:, [4, 8]] = True
    got = fill_map(estimate, np.where(exact, truth, np.nan), exact)
    np.testing.assert_allclose(got, truth, rtol=1e-9)
    # a row with one exact cell takes the others' median log-slope; a row with none, the scaled estimate
    exact[0] = [False] * 8 + [True]
    exact[1] = False
    got = fill_map(estimate, np.where(exact, truth, np.nan), exact)
    slope = np.median(np.log([2.2, 1.2]))  # rows 2 and 3 have two exact cells
    np.testing.assert_allclose(got[0], truth[0, 8] * np.exp(slope * (j - 8)), rtol=1e-9)
    e, x = estimate[exact], truth[exact]
    np.testing.assert_allclose(got[1], estimate[1] * (e @ x) / (e @ e), rtol=1e-9)
    # a change at or below the noise level (the largest negative change measured) counts as that level; the
    # measured cells keep their values
    vals = np.array([[np.nan, -0.02, np.nan, 0.5], [np.nan, np.nan, np.nan, -0.01]])
    got = fill_map(np.ones((2, 4)), vals, ~np.isnan(vals))
    np.testing.assert_allclose(got[0], [0.004, -0.02, 0.1, 0.5], rtol=1e-9)
    np.testing.assert_allclose(got[1], [0.02 / 125, 0.02 / 25, 0.02 / 5, -0.01], rtol=1e-9)
    assert np.isfinite(fill_map(np.zeros((2, 3)), np.zeros((2, 3)), np.ones((2, 3), dtype=bool))).all()
    # a steep segment extrapolated far stays finite: at most ten times the largest measured change
    steep = np.full((1, 40), np.nan)
    steep[0, :2] = [1e-30, 1.0]
    got = fill_map(np.ones((1, 40)), steep, ~np.isnan(steep))
    assert np.isfinite(got).all() and got.max() == pytest.approx(10.0)


def test_refine_measures_loss_and_says_so_for_another_metric():
    model, data = make("rescat")
    bench = wb.Workbench(model, data)
    with pytest.raises(WorkbenchError, match=r"metric is 'loss'.*mode='exact'"):
        bench.sensitivity(mode="refine", metric="accuracy")
    with pytest.raises(WorkbenchError, match=r"budget .* \[0, 1\]; got 1.5"):
        bench.sensitivity(mode="refine", budget=1.5)


# ---------------------------------------------------------------- several ratios per pass
@pytest.mark.parametrize("arch", ["rescat", "mha", "digits-cnn", "digits-resnet"])
def test_batched_points_equal_one_at_a_time_points(arch, monkeypatch):
    from workbench.analysis import _points

    if arch.startswith("digits"):
        model, d = wb.demo.load(arch)
        data = d.calib
    else:
        model, data = make(arch)
    bench = wb.Workbench(model, data, metric="loss")
    snap = snapshot(model)
    ratios = np.linspace(0.1, 0.9, 9)
    ran = []
    real = _points._batched_outputs
    monkeypatch.setattr(_points, "_batched_outputs", lambda *a: ran.append(1) or real(*a))
    one = bench.sensitivity(ratios, engine="suffix", progress=False)
    assert not ran
    many = bench.sensitivity(ratios, engine="batched", progress=False)
    assert ran and "vmap" in many.engine
    np.testing.assert_allclose(many.values, one.values, atol=1e-6, rtol=0)
    assert_bitwise(model, snap)
    assert_plain(model)


def test_batched_points_never_swap_the_live_modules_tensors(monkeypatch):
    """vmap's functional_call swaps a module's tensors for the duration of the call: it must run on a structural
    clone, never on a live module that other points on the thread pool (or any other reader) use meanwhile."""
    import torch.func

    model, d = wb.demo.load("digits-resnet")
    bench = wb.Workbench(model, d.calib, metric="loss")
    live = {id(m) for m in model.modules()}
    on_live, real = [], torch.func.functional_call

    def spy(module, *args, **kwargs):
        if id(module) in live:
            on_live.append(type(module).__name__)
        return real(module, *args, **kwargs)

    monkeypatch.setattr(torch.func, "functional_call", spy)
    with ThreadPoolExecutor(2) as pool:
        many = bench.sensitivity(
            np.linspace(0.1, 0.9, 9), "filter", "l1", engine="batched", executor=pool, progress=False
        )  # coupled rows: members downstream of other members run under vmap through functional_call
    assert "vmap" in many.engine and np.isfinite(many.values).all()
    # the estimate's gradient passes (first order, and per-sample for the Fisher term) run the same way
    est = bench.sensitivity(np.linspace(0.1, 0.9, 9), "filter", "l1", mode="estimate", second_order=True)
    assert np.isfinite(est.values).all()
    assert not on_live, f"functional_call on live modules: {sorted(set(on_live))}"


def test_refine_steps_is_a_generator_the_caller_can_leave_at_any_time():
    from workbench.analysis.sensitivity import refine_steps

    model, data = make("rescat")
    bench = wb.Workbench(model, data)
    snap = snapshot(model)
    seen = []
    for m in refine_steps(bench, (0.3, 0.6, 0.9), trust_cells=2, progress=False):
        seen.append(int(m.exact.sum()))
        if len(seen) == 4:
            break  # leaving the loop ends the scan
    assert seen == [2, 3, 4, 5]
    assert_bitwise(model, snap)
    assert_plain(model)
    got = []  # the generator released the bench's lock when it was left: another thread can take it
    t = threading.Thread(target=lambda: got.append(bench.store.lock.acquire(timeout=5) and bench.store.lock.release()))
    t.start()
    t.join()
    assert got == [None]


def test_prefix_sums_pro_rata_move_less_than_the_bucket_of_the_kth_score(monkeypatch):
    from workbench.analysis import _ranking

    monkeypatch.setattr(_ranking, "SORT_BELOW", 100)
    g = torch.Generator().manual_seed(1)
    w = torch.randn(200_000, generator=g).abs()
    r = _ranking.PrefixRanking(["w"], [w])
    vals = torch.randn(w.numel(), generator=g)
    ks = [n_to_prune(q, w.numel()) for q in (0.1, 0.5, 0.9)]
    for k, a, b in zip(ks, r.prefix_sums(vals, ks), r.prefix_sums(vals, ks, exact=False)):
        bucket = r._locate(k)[0]
        whole = float(vals[r._ids == bucket].abs().sum())
        assert abs(a - b) <= whole


def test_trust_cells_are_distinct_and_never_loop_when_rows_are_few():
    from workbench.analysis._estimate import pick_cells

    # 3 rows x 3 ratios with 8 cells asked used to put 4 picks on the middle row and loop forever looking for a
    # free ratio there (the digits-mlp estimate hung)
    for rows in range(1, 7):
        for cols in range(1, 7):
            for k in range(1, 14):
                cells = pick_cells(rows, cols, k)
                assert len(cells) == len(set(cells)) == min(k, rows * cols), (rows, cols, k)
                assert all(0 <= i < rows and 0 <= j < cols for i, j in cells)
