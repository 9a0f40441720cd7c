"""Learned masks (movement pruning): the target is met exactly, zeros stay zero, earlier pruning is kept, the
scores learn something magnitude would not pick, determinism, stopping, no hooks, exact undo, bad input."""

import pytest
import torch
from conftest import assert_bitwise, assert_plain, snapshot

import workbench as wb
from workbench.training._loop import pool

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is fastest and steadiest


def small_cnn():
    model, data = wb.demo.load("digits-cnn")
    g = torch.Generator().manual_seed(0)
    x, y = data.train.dataset.tensors
    train = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x[:256], y[:256]), batch_size=64, shuffle=True, generator=g
    )
    return model, data, train


def pool_sparsity(bench) -> float:
    names = pool(bench)
    total = sum(bench.model.get_parameter(n).numel() for n in names)
    return sum(int(bench.masks[n].sum()) for n in names if n in bench.masks) / total


def test_target_met_exactly_zeros_stay_zero_and_the_plan_matches_the_masks():
    model, data, train = small_cnn()
    bench = wb.Workbench(model, data, train=train)
    dense = snapshot(model)
    seen = []

    def check(done, total):
        seen.append(done)

    r = wb.training.learned_masks(bench, ratio=0.8, epochs=2, finetune_epochs=1, progress=check)
    assert seen == list(range(1, 13)) and r.kind == "learned" and not r.stopped
    assert pool_sparsity(bench) == pytest.approx(0.8, abs=1e-4)
    for name, m in bench.masks.items():
        assert (model.get_parameter(name)[m] == 0).all(), name  # also after the fine-tune epoch
    plan = r.info["plan"]
    assert isinstance(plan, wb.Plan) and bench.history[-1].plan == plan.to_dict()
    for layer, lp in plan.layers.items():
        (pname,) = bench.targets[layer].param_names()
        assert lp.ratio == pytest.approx(float(bench.masks[pname].float().mean()), abs=1e-5), layer
    assert r.info["sparsity_schedule"][-1] == pytest.approx(0.8) and r.info["sparsity_schedule"][0] < 0.8
    assert_plain(model)
    assert all(p.grad is None for p in model.parameters())
    tuned = snapshot(model)
    bench.undo()
    assert_bitwise(model, dense)
    bench.redo()
    assert_bitwise(model, tuned)


def test_scores_learn_a_mask_that_magnitude_would_not_pick():
    """With a large score learning rate the learned mask moves away from the magnitude mask it starts from; with a
    vanishing one it stays the magnitude mask (so the difference comes from the learned scores)."""
    model, data, train = small_cnn()
    bench = wb.Workbench(model, data, train=train)
    bench.apply(wb.Plan.global_(0.8))
    magnitude = {k: v.clone() for k, v in bench.masks.items()}
    bench.reset()

    def diff():
        return sum(int((bench.masks[k] ^ magnitude[k]).sum()) for k in magnitude)

    wb.training.learned_masks(bench, ratio=0.8, epochs=1, finetune_epochs=0, score_lr=1e-12, progress=False)
    assert diff() == 0
    bench.reset()
    wb.training.learned_masks(bench, ratio=0.8, epochs=2, finetune_epochs=0, score_lr=0.3, progress=False)
    kept = sum(int((~m).sum()) for m in magnitude.values())
    assert diff() / 2 > 0.1 * kept  # shipped weights, this run: 27% of the kept weights are swapped


def test_earlier_pruning_stays_and_counts_towards_the_target_per_layer_scope():
    model, data, train = small_cnn()
    bench = wb.Workbench(model, data, train=train)
    bench.apply(wb.Plan.uniform(0.5, granularity="filter", criterion="l1"))
    before = {k: v.clone() for k, v in bench.masks.items()}
    r = wb.training.learned_masks(bench, ratio=0.7, epochs=1, finetune_epochs=0, scope="layer", progress=False)
    for k, m in before.items():
        assert bool((bench.masks[k] & m).eq(m).all()), k  # nothing revived
    for layer, lp in r.info["plan"].layers.items():  # every layer at the target with scope="layer" (or above it,
        (pname,) = bench.targets[layer].param_names()  # when coupled filter pruning already removed more)
        already = float(before[pname].float().mean()) if pname in before else 0.0
        assert lp.ratio == pytest.approx(max(0.7, already), abs=2e-3), layer


def test_deterministic_with_a_seed():
    runs = []
    for _ in range(2):
        model, data, train = small_cnn()
        bench = wb.Workbench(model, data, train=train)
        wb.training.learned_masks(bench, ratio=0.8, epochs=1, finetune_epochs=1, seed=3, progress=False)
        runs.append(snapshot(model))
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_stopping_applies_the_mask_reached_and_records_it():
    model, data, train = small_cnn()
    bench = wb.Workbench(model, data, train=train)
    dense = snapshot(model)

    def stop(done, total):
        if done == 3:
            raise KeyboardInterrupt

    with pytest.warns(wb.WorkbenchWarning, match="stopped"):
        r = wb.training.learned_masks(bench, ratio=0.9, epochs=2, progress=stop)
    assert r.stopped and "stopped" in bench.history[-1].label
    reached = r.info["sparsity_reached"]
    assert 0 < reached < 0.9 and pool_sparsity(bench) == pytest.approx(reached, abs=1e-4)
    for name, m in bench.masks.items():
        assert (model.get_parameter(name)[m] == 0).all()
    assert_plain(model)
    bench.undo()
    assert_bitwise(model, dense)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"target": 0.0}, "strictly between 0 and 1"),
        ({"target": 1.0}, "strictly between 0 and 1"),
        ({"target": True}, "strictly between 0 and 1"),
        ({"scope": "row"}, "scope must be one of"),
        ({"epochs": 0}, "epochs must be an integer"),
        ({"score_lr": -1}, "score_lr must be"),
        ({"momentum": 0.9}, "unknown training options"),
    ],
)
def test_bad_arguments_name_the_value(kwargs, match):
    model, data, train = small_cnn()
    bench = wb.Workbench(model, data, train=train)
    snap = snapshot(model)
    with pytest.raises(wb.training.TrainingError, match=match):
        wb.training.learned_masks(bench, **{"progress": False, **kwargs})
    assert_bitwise(model, snap)
    assert len(bench.history) == 1


def test_without_training_data_the_error_says_pass_train():
    model, data, _ = small_cnn()
    bench = wb.Workbench(model, data.val)
    with pytest.raises(wb.DataError, match="pass train="):
        wb.training.learned_masks(bench, ratio=0.5)


def test_no_layer_collapses_even_at_extreme_global_sparsity():
    """Global scores could empty a small layer (the classifier) and disconnect the network; each tensor keeps its
    best-scoring weight, so the learned plan is a valid plan (every ratio < 1)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 256), torch.nn.ReLU(), torch.nn.Linear(256, 3))
    data = [(torch.randn(16, 8), torch.randint(0, 3, (16,))) for _ in range(4)]
    bench = wb.Workbench(model, data, train=data)
    r = wb.training.learned_masks(bench, ratio=0.995, epochs=2, finetune_epochs=0, score_lr=1.0, progress=False)
    for name in ("0.weight", "2.weight"):
        assert int((~bench.masks[name]).sum()) >= 1, name
    assert all(lp.ratio < 1 for lp in r.info["plan"].layers.values())
