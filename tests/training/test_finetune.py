"""finetune: zeros stay zero every step, exact undo/redo of training, KD teachers, determinism, stopping, errors."""

import pytest
import torch
from conftest import assert_bitwise, assert_plain, snapshot

import workbench as wb

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is fastest and steadiest


def small_cnn(pretrained=True):
    """digits-cnn with a 4-batch training loader, so every test trains in well under a second."""
    model, data = wb.demo.load("digits-cnn", pretrained=pretrained)
    g = torch.Generator().manual_seed(0)
    x, y = data.train.dataset.tensors
    train = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x[:256], y[:256]), batch_size=64, shuffle=True, generator=g
    )
    return model, data, train


def test_pruned_weights_stay_exactly_zero_through_every_step():
    model, data, train = small_cnn()
    bench = wb.Workbench(model, data, train=train)
    bench.apply(wb.Plan.global_(0.8))
    masks = {k: v.clone() for k, v in bench.masks.items()}
    before = snapshot(model)
    seen = []

    def check(done, total):
        for name, m in masks.items():
            assert (model.get_parameter(name)[m] == 0).all(), (name, done)
        seen.append(done)

    r = bench.finetune(epochs=2, lr=1e-2, progress=check)
    assert seen == list(range(1, 9)) and r.entry == 2 and not r.stopped
    w = model.features[3].weight
    assert not torch.equal(w, before["features.3.weight"])  # the survivors did train
    assert torch.equal(bench.masks["features.3.weight"], masks["features.3.weight"])  # no new masks
    assert (model.get_parameter("features.3.weight")[masks["features.3.weight"]] == 0).all()


def test_undo_redo_goto_reset_are_bitwise_across_a_finetune():
    model, data, train = small_cnn()
    model.train()  # flags are restored to what they were
    dense = snapshot(model)
    bench = wb.Workbench(model, data, train=train)
    bench.apply(wb.Plan.global_(0.7))
    pruned = snapshot(model)
    bench.finetune(epochs=1, lr=1e-2, progress=False)
    tuned = snapshot(model)
    bench.apply(wb.Plan.global_(0.85))
    again = snapshot(model)
    assert [e.kind for e in bench.history] == ["prune", "prune", "finetune", "prune"]
    bench.undo()
    assert_bitwise(model, tuned)
    bench.undo()
    assert_bitwise(model, pruned)
    bench.undo()
    assert_bitwise(model, dense)
    bench.redo()
    bench.redo()
    assert_bitwise(model, tuned)
    bench.goto(3)
    assert_bitwise(model, again)
    bench.reset()
    assert_bitwise(model, dense)
    bench.goto(2)
    assert_bitwise(model, tuned)
    assert_plain(model)
    assert all(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())


def test_the_store_alone_and_effect_transactions_move_through_a_finetune_exactly():
    """The weight swap of a training step lives in the mask store: store.goto_/reset_ and the effect analyses'
    state transactions (analysis.states.at) see the pre-training values, and come back to the trained ones."""
    from workbench.analysis.states import at

    model, data, train = small_cnn()
    dense = snapshot(model)
    bench = wb.Workbench(model, data, train=train)
    bench.apply(wb.Plan.global_(0.7))
    pruned = snapshot(model)
    bench.finetune(epochs=1, lr=1e-2, progress=False)
    tuned = snapshot(model)
    with at(bench, 1):
        assert_bitwise(model, pruned)
    assert_bitwise(model, tuned)
    with at(bench, 0):
        assert_bitwise(model, dense)
    assert_bitwise(model, tuned)
    bench.store.goto_(1)
    assert_bitwise(model, pruned)
    bench.store.reset_()
    assert_bitwise(model, dense)
    bench.store.goto_(2)
    assert_bitwise(model, tuned)
    cmp = bench.compare_states(a=0, b=-1)  # dense vs fine-tuned: a real difference, and nothing moved
    assert cmp is not None
    assert_bitwise(model, tuned)


def test_deterministic_with_a_seed_and_the_global_rng_is_left_alone():
    model, data, train = small_cnn()
    bench = wb.Workbench(model, data, train=train)
    bench.apply(wb.Plan.global_(0.8))
    rng = torch.random.get_rng_state()
    loader_rng = train.generator.get_state()
    a = bench.finetune(epochs=2, seed=3, progress=False)
    first = snapshot(model)
    assert torch.equal(torch.random.get_rng_state(), rng) and torch.equal(train.generator.get_state(), loader_rng)
    bench.undo()
    b = bench.finetune(epochs=2, seed=3, progress=False)
    assert_bitwise(model, first)
    assert a.loss.tolist() == b.loss.tolist() and a.metric.tolist() == b.metric.tolist()
    bench.undo()
    bench.finetune(epochs=2, seed=4, progress=False)
    assert not torch.equal(model.features[3].weight, first["features.3.weight"])


def test_kd_from_before_uses_the_dense_state_and_does_not_touch_the_model():
    model, data, train = small_cnn()
    dense_out = model(data.example).detach()
    bench = wb.Workbench(model, data, train=train)
    bench.apply(wb.Plan.global_(0.9))
    from workbench.training.finetune import resolve_teacher

    snap = snapshot(model)
    teacher, desc = resolve_teacher(bench, "before")
    assert desc == "entry 0" and torch.equal(teacher(data.example), dense_out)
    assert_bitwise(model, snap)
    assert not any(p.requires_grad for p in teacher.parameters())
    # the teacher shares no storage with the live model: training the student cannot move it
    live = {t.data_ptr() for t in model.state_dict().values()}
    assert not any(t.data_ptr() in live for t in teacher.state_dict().values())
    plain = bench.finetune(epochs=2, lr=1e-2, progress=False)
    bench.undo()
    kd = bench.finetune(epochs=2, lr=1e-2, teacher="before", T=4.0, alpha=0.9, progress=False)
    assert "KD from entry 0" in bench.history[-1].label
    assert kd.loss.tolist() != plain.loss.tolist()  # the teacher enters the loss
    # whether distillation beats labels alone is decided by the training run: benchmarks/trained_claims.py
    # measures it; by construction, alpha=0 weighs the teacher by zero and is the label-only run exactly
    bench.undo()
    none = bench.finetune(epochs=2, lr=1e-2, teacher="before", T=4.0, alpha=0.0, progress=False)
    assert none.loss.tolist() == plain.loss.tolist() and none.metric.tolist() == plain.metric.tolist()
    r = bench.finetune(epochs=1, teacher=0, progress=False)  # a history index
    assert r.info["teacher"] == "entry 0"


def test_teacher_module_with_other_outputs_is_refused_and_nothing_changes():
    model, data, train = small_cnn()
    bench = wb.Workbench(model, data, train=train)
    bench.apply(wb.Plan.global_(0.5))
    snap = snapshot(model)
    other = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 5))
    with pytest.raises(wb.ModelError, match=r"teacher outputs shape \(64, 5\) but the model outputs \(64, 10\)"):
        bench.finetune(epochs=1, teacher=other, progress=False)
    assert_bitwise(model, snap)
    assert len(bench.history) == 2
    with pytest.raises(wb.training.TrainingError, match="the live model itself"):
        bench.finetune(teacher=model)
    fresh = wb.Workbench(model, data, train=train)
    with pytest.raises(wb.training.TrainingError, match="no pruning step is applied"):
        fresh.finetune(teacher="before")


def test_without_training_data_the_error_says_pass_train():
    model, data, _ = small_cnn()
    bench = wb.Workbench(model, data.val)
    with pytest.raises(wb.DataError, match="pass train="):
        bench.finetune(epochs=1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"epochs": 0}, "epochs must be an integer"),
        ({"lr": -1.0}, "lr must be a number"),
        ({"alpha": 1.5}, "alpha must be"),
        ({"T": 0}, "temperature T"),
        ({"teacher": "after"}, "teacher must be"),
        ({"teacher": 7}, "history index 7 does not exist"),
        ({"optimizer": "lion"}, "optimizer must be one of"),
        ({"schedule": "step"}, "schedule must be one of"),
    ],
)
def test_bad_arguments_name_the_value(kwargs, match):
    model, data, train = small_cnn()
    bench = wb.Workbench(model, data, train=train)
    snap = snapshot(model)
    with pytest.raises(wb.training.TrainingError, match=match):
        bench.finetune(**{"progress": False, **kwargs})
    assert_bitwise(model, snap)
    assert len(bench.history) == 1


def test_stopping_records_the_state_reached_consistently():
    model, data, train = small_cnn()
    bench = wb.Workbench(model, data, train=train)
    bench.apply(wb.Plan.global_(0.8))
    pruned = snapshot(model)

    def stop_at_6(done, total):
        if done == 6:
            raise KeyboardInterrupt

    with pytest.warns(wb.WorkbenchWarning, match="stopped"):
        r = bench.finetune(epochs=3, progress=stop_at_6)
    assert r.stopped and r.epoch.tolist() == [1.0, 1.5] and "stopped at epoch 1.50" in bench.history[-1].label
    for name, m in bench.masks.items():
        assert (model.get_parameter(name)[m] == 0).all()
    stopped = snapshot(model)
    bench.undo()
    assert_bitwise(model, pruned)
    bench.redo()
    assert_bitwise(model, stopped)
    assert_plain(model)


def test_curves_for_plotting():
    model, data, train = small_cnn()
    bench = wb.Workbench(model, data, train=train)
    bench.apply(wb.Plan.global_(0.8))
    r = bench.finetune(epochs=3, lr=3e-3, progress=False)
    d = r.to_dict()
    assert d["epoch"] == [1.0, 2.0, 3.0] and len(d["loss"]) == len(d["metric"]) == len(d["lr"]) == 3
    assert d["lr"][0] > d["lr"][1] > d["lr"][2] == pytest.approx(0.0, abs=1e-12)  # cosine to zero
    assert len(d["step_loss"]) == 12 and all(s == pytest.approx(0.8, abs=0.01) for s in d["sparsity"])
    assert r.metric_name == "accuracy" and r.final_metric == d["metric"][-1]
