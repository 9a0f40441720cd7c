"""Robustness before vs after (workbench/analysis/robustness.py): attacks, noise, the robust_accuracy metric."""

import warnings

import numpy as np
import pytest
from conftest import assert_bitwise, assert_plain, snapshot
from zoo import make

import workbench as wb
from workbench.analysis.robustness import AttackError, available_attacks, robust_accuracy
from workbench.errors import WorkbenchWarning

EPS = (0.0, 0.05, 0.1)


@pytest.fixture(scope="module")
def cnn_rob():
    """One robustness run on the demo CNN (dense vs 50% magnitude), shared by the tests that only read it."""
    model, data = wb.demo.load("digits-cnn")
    bench = wb.Workbench(model, data)
    bench.apply(wb.Plan.uniform(0.5))
    snap = snapshot(model)
    rob = bench.robustness(("fgsm", "pgd", "noise"), EPS, samples=128, seed=0)
    assert_bitwise(model, snap)
    assert_plain(model)
    yield bench, rob
    bench.reset()


def test_eps_zero_is_the_clean_accuracy_of_evaluate(cnn_rob):
    bench, _ = cnn_rob
    rob = bench.robustness(("fgsm", "noise"), (0.0,))  # all 360 validation samples
    assert rob.n == 360
    assert rob.accuracy[1, :, 0].tolist() == [bench.evaluate()["accuracy"]] * 2
    assert rob.accuracy[0, :, 0].tolist() == [bench.history[0].metrics["accuracy"]] * 2
    assert (rob.flip_rate == 0).all()


def test_pgd_is_at_most_fgsm_is_at_most_clean(cnn_rob):
    """Attack strength is a property of the model, not of the code: asserted where the shipped weights clear it
    by a margin (digits-cnn, 128 digits; per state before / after). At eps 0.05 PGD and FGSM are 2-3 digits apart,
    so that ordering is measured by benchmarks/trained_claims.py instead."""
    _, rob = cnn_rob
    fgsm, pgd, noise = rob.accuracy[:, 0], rob.accuracy[:, 1], rob.accuracy[:, 2]
    for s in (0, 1):
        # eps 0.1: PGD 0.383 / 0.148 vs FGSM 0.602 / 0.227 (28 and 10 digits)
        assert pgd[s, -1] <= fgsm[s, -1], (pgd[s], fgsm[s])
        assert np.all(fgsm[s] <= rob.clean_accuracy[s] + 1e-9)
        # stronger with eps: each step costs 10 digits or more (FGSM 1.0, 0.922, 0.602 / 0.672, 0.438, 0.227)
        assert np.all(np.diff(fgsm[s]) <= 0) and np.all(np.diff(pgd[s]) <= 0)
        assert fgsm[s, -1] < rob.clean_accuracy[s]
    assert rob.value("pgd", 0.1, "before") == pgd[0, 2]
    assert noise[0, 0] == rob.clean_accuracy[0]


def test_fixed_seeds_give_the_same_numbers(cnn_rob):
    bench, rob = cnn_rob
    again = bench.robustness(("pgd", "noise"), EPS, samples=128, seed=0)
    assert np.array_equal(again.accuracy, rob.accuracy[:, 1:]) and np.array_equal(again.flip_rate, rob.flip_rate[:, 1:])
    other = bench.robustness(("noise",), (0.3,), samples=128, seed=1)
    first = bench.robustness(("noise",), (0.3,), samples=128, seed=0)
    assert not np.array_equal(other.flip_rate, first.flip_rate) or other.accuracy.tolist() != first.accuracy.tolist()


def test_bad_robustness_input(cnn_rob):
    bench, _ = cnn_rob
    snap = snapshot(bench.model)
    with pytest.raises(AttackError, match=r"eps must be >= 0.*-0.1"):
        bench.robustness(eps=(0, -0.1))
    with pytest.raises(AttackError, match="pgd"):
        bench.robustness(attacks=("pgdd",))
    with pytest.warns(WorkbenchWarning, match="holds only 360"):
        rob = bench.robustness(("noise",), (0.1,), samples=5000)
    assert rob.n == 360
    assert_bitwise(bench.model, snap)


def test_integer_token_inputs_name_the_attacks_that_apply():
    model, data = make("tied")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WorkbenchWarning)
        bench = wb.Workbench(model, data)
    bench.apply(wb.Plan.uniform(0.5))
    snap = snapshot(model)
    with pytest.raises(AttackError, match=r"\['fgsm', 'pgd', 'noise'\].*substitute.*attributions"):
        bench.robustness(("fgsm", "pgd", "noise"))
    default = bench.robustness()  # on token inputs the default attack is the one that applies
    assert default.attacks == ("substitute",) and default.eps.tolist() == [0.0, 0.1, 0.25, 0.5]
    rob = bench.robustness(("substitute",), (0.0, 0.5, 1.0))
    assert available_attacks("int") == ["substitute"] and rob.flip_rate[:, 0, 0].tolist() == [0, 0]
    assert_bitwise(model, snap)


def test_an_attack_stopped_midway_leaves_the_model_as_it_was(cnn_rob):
    bench, _ = cnn_rob
    bench.apply(wb.Plan.global_(0.7))
    bench.undo()
    pos, steps, snap = bench.store.position, len(bench.store.steps), snapshot(bench.model)

    def stop(done, total):
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        bench.robustness(("pgd",), EPS, samples=64, before=2, after=0, progress=stop)
    assert (bench.store.position, len(bench.store.steps)) == (pos, steps)
    assert_bitwise(bench.model, snap)
    assert_plain(bench.model)


def test_robust_accuracy_as_a_sensitivity_metric(cnn_rob):
    bench, _ = cnn_rob
    snap = snapshot(bench.model)
    metric = robust_accuracy("fgsm", 0.1, samples=64)
    assert metric.__name__ == "robust_accuracy(fgsm, eps=0.1)"
    clean = robust_accuracy("fgsm", 0.0, samples=64)(bench.model, bench.calib)
    attacked = metric(bench.model, bench.calib)  # the scan's baseline, on its data (calib)
    assert 0 <= attacked < clean  # shipped weights: 0.219 vs 0.672
    sens = bench.sensitivity((0.5,), layers=["features.3"], metric=metric, progress=False)
    assert sens.metric_name == "robust_accuracy(fgsm, eps=0.1)" and np.isfinite(sens.values).all()
    assert sens.baseline == pytest.approx(attacked)
    assert_bitwise(bench.model, snap)


@pytest.mark.parametrize("name", ["digits-mlp", "digits-resnet", "digits-lstm", "digits-transformer"])
def test_robustness_on_every_demo_model(demo_models, name):
    model, data = demo_models[name]
    bench = wb.Workbench(model, data)
    try:
        bench.apply(wb.Plan.uniform(0.5))
        snap = snapshot(model)
        rob = bench.robustness(("fgsm", "noise"), (0.0, 0.1), samples=32)
        assert rob.accuracy.shape == (2, 2, 2) and rob.x_range == (0.0, 1.0)
        # FGSM at eps 0.1 never raises accuracy; shipped weights: closest is the dense resnet, 29 vs 31 of 32
        assert np.all(rob.accuracy[:, 0, 1] <= rob.clean_accuracy)
        assert_bitwise(model, snap)
        assert_plain(model)
    finally:
        bench.reset()


@pytest.mark.parametrize("progress", [None, False, True])
def test_progress_takes_what_sensitivity_takes(cnn_rob, progress):
    """False, None or True (a tqdm bar) as for sensitivity (False and True raised "'bool' object is not callable"),
    or a callback that hears 0..total; none of them changes the result."""
    bench, _ = cnn_rob
    calls = []
    kw = dict(attacks=("fgsm",), eps=(0.0, 0.1), samples=32)
    ref = bench.robustness(**kw, progress=lambda done, total: calls.append((done, total)))
    rob = bench.robustness(**kw, progress=progress)
    assert calls == [(i, 2) for i in range(3)]  # one batch of 32, one attack at one eps > 0, in two states
    assert np.array_equal(rob.accuracy, ref.accuracy) and np.array_equal(rob.flip_rate, ref.flip_rate)
