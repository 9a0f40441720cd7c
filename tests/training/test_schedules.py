"""gradual (AGP), iterative vs one-shot, lottery with rewinding: schedules, exact sparsity,
zeros stay zero, one history step with exact undo, determinism, stopping."""

import pytest
import torch
from conftest import assert_bitwise, assert_plain, snapshot

import workbench as wb
from workbench.masks import n_to_prune
from workbench.training import agp_sparsity, round_sparsity

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is fastest and steadiest


def mlp_bench(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(128, 8, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    train = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32, shuffle=True, generator=g)
    return model, wb.Workbench(model, [(x[:64], y[:64])], train=train)


def pool_sparsity(bench):
    names = ["0.weight", "2.weight"]
    total = sum(bench.model.get_parameter(n).numel() for n in names)
    return sum(int((bench.model.get_parameter(n) == 0).sum()) for n in names) / total, total


def test_agp_formula_and_round_schedules():
    s = [agp_sparsity(t, initial=0.1, final=0.9, start=2, n=4, dt=2) for t in (0, 2, 4, 6, 8, 10, 12)]
    assert s[0] == s[1] == pytest.approx(0.1) and s[-1] == s[-2] == pytest.approx(0.9)
    assert s[2] == pytest.approx(0.9 - 0.8 * 0.75**3)
    diffs = [s[i + 1] - s[i] for i in (1, 2, 3)]
    assert diffs[0] > diffs[1] > diffs[2] > 0  # cubic: fast first, slow near the end
    assert round_sparsity(4, 4, 0.9) == pytest.approx(0.9)
    assert (1 - round_sparsity(1, 2, 0.75)) == pytest.approx(0.5)  # each round keeps the same share


def test_gradual_reaches_the_exact_final_sparsity_with_growing_masks_and_undoes_bitwise():
    model, bench = mlp_bench()
    dense = snapshot(model)
    seen = []

    def watch(done, total):  # after every step: what was pruned before stays pruned and zero
        now = {n: (model.get_parameter(n) == 0) for n in ("0.weight", "2.weight")}
        if seen:
            assert all((now[n] | ~seen[-1][n]).all() for n in now)
        seen.append(now)

    r = wb.training.gradual(bench, ratio=0.9, steps=5, epochs=4, end=0.5, progress=watch)
    assert [e["step"] for e in r.info["events"]] == [2, 3, 5, 6, 8]  # every dt = 0.5 * 16 / 5 = 1.6 steps
    ratios = [e["ratio"] for e in r.info["events"]]
    assert ratios == sorted(ratios) and ratios[-1] == pytest.approx(0.9)
    sparsity, total = pool_sparsity(bench)
    assert sparsity == n_to_prune(0.9, total) / total
    assert r.sparsity.tolist()[-1] == pytest.approx(sparsity)
    assert [e.kind for e in bench.history] == ["prune", "gradual"] and r.entry == 1
    assert bench.history[-1].removed == n_to_prune(0.9, total)
    bench.undo()
    assert_bitwise(model, dense)
    assert_plain(model)


def test_gradual_is_deterministic_and_takes_any_final_plan():
    model, bench = mlp_bench()
    wb.training.gradual(bench, ratio=0.8, steps=3, epochs=2, progress=False, seed=1)
    first = snapshot(model)
    bench.undo()
    wb.training.gradual(bench, ratio=0.8, steps=3, epochs=2, progress=False, seed=1)
    assert_bitwise(model, first)
    bench.undo()
    plan = wb.Plan.uniform(0.5, granularity="neuron", criterion="l2", include=["0"])
    r = wb.training.gradual(bench, steps=2, epochs=1, plan=plan, progress=False)
    rows = (model[0].weight == 0).all(1)
    assert int(rows.sum()) == 16 and r.info["final"] == 0.5
    with pytest.raises(wb.PlanError):
        wb.training.gradual(bench, plan=wb.Plan({"nope": wb.LayerPlan(0.5)}), progress=False)


def test_iterative_and_one_shot_end_at_the_same_sparsity_with_equal_epochs():
    _, bench = mlp_bench()
    one = wb.training.iterative(bench, ratio=0.85, rounds=1, finetune_epochs=3, progress=False)
    s_one = pool_sparsity(bench)[0]
    bench.undo()
    it = wb.training.iterative(bench, ratio=0.85, rounds=3, finetune_epochs=1, progress=False)
    assert pool_sparsity(bench)[0] == s_one
    assert len(one.epoch) == len(it.epoch) == 3
    assert [round(e["ratio"], 4) for e in it.info["events"]] == [
        round(round_sparsity(r, 3, 0.85), 4) for r in (1, 2, 3)
    ]
    assert all("pruned_metric" in e and "metric" in e for e in it.info["events"])
    assert bench.history[-1].label.startswith("iterative to 0.85 in 3 rounds")


def test_lottery_rewinds_survivors_to_their_epoch_k_values():
    model, bench = mlp_bench()
    start = snapshot(model)
    kw = dict(lr=1e-2, schedule="constant", seed=5, progress=False)
    # the first k epochs of the ticket's training are a plain fine-tune with the same seed and schedule
    bench.finetune(epochs=1, **kw)
    theta_k = snapshot(model)
    bench.undo()
    r = wb.training.lottery(bench, ratio=0.75, rounds=1, rewind_epoch=1, epochs=2, **kw)
    assert len(r.epoch) == 2 + 1 and r.info["events"][1]["ratio"] == pytest.approx(0.75)
    masks = {n: model.get_parameter(n) == 0 for n in ("0.weight", "2.weight")}
    # rebuild the rewound ticket: epoch-k weights with the final masks
    rewound = {k: v.clone() for k, v in theta_k.items()}
    for n, m in masks.items():
        rewound[n][m] = 0
    with torch.no_grad():
        ticket = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))
        ticket.load_state_dict(rewound)
    assert r.info["events"][1]["rewound_metric"] == wb.evaluate(ticket, bench.data)["metric"]
    bench.undo()
    assert_bitwise(model, start)
    with pytest.raises(wb.training.TrainingError, match="rewind_epoch must be"):
        wb.training.lottery(bench, rewind_epoch=3, epochs=3)


def test_a_stopped_schedule_is_recorded_consistently():
    model, bench = mlp_bench()
    dense = snapshot(model)

    def stop(done, total):
        if done == 5:
            raise KeyboardInterrupt

    with pytest.warns(wb.WorkbenchWarning, match="stopped"):
        r = wb.training.gradual(bench, ratio=0.9, steps=4, epochs=4, progress=stop)
    assert r.stopped and "stopped" in bench.history[-1].label
    mid = pool_sparsity(bench)[0]
    assert 0 < mid < 0.9
    for n in ("0.weight", "2.weight"):
        m = bench.masks[n]
        assert (model.get_parameter(n)[m] == 0).all()
    bench.undo()
    assert_bitwise(model, dense)


@pytest.mark.parametrize(
    "fn, old",
    [
        (wb.training.gradual, "final"),
        (wb.training.iterative, "final"),
        (wb.training.lottery, "final"),
        (wb.training.admm, "final"),
        (wb.training.learned_masks, "target"),
        (wb.training.compare_timing, "sparsity"),
    ],
)
def test_every_procedure_calls_its_target_sparsity_ratio_and_the_old_name_warns(fn, old):
    import inspect

    assert "ratio" in inspect.signature(fn).parameters and old not in inspect.signature(fn).parameters
    _, bench = mlp_bench()
    with pytest.raises(TypeError, match=rf"both {old}= \(deprecated\) and ratio="):
        fn(bench, **{old: 0.5, "ratio": 0.5})
    with pytest.warns(DeprecationWarning, match=rf"{fn.__name__}\({old}=\.\.\.\) is deprecated: use"):
        with pytest.raises(Exception, match=r"1\.5"):  # the old name reaches the new parameter: its check names it
            fn(bench, **{old: 1.5})
