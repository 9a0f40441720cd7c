"""Every procedure runs on every demo model (MLP, CNN, ResNet, LSTM, transformer) and undoes bitwise."""

import warnings

import pytest
from conftest import assert_bitwise, assert_plain, snapshot

import workbench as wb

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is fastest and steadiest


@pytest.mark.parametrize("name", wb.demo.available())
def test_at_init_finetune_kd_schedules_and_quantize_on_every_demo_model(name):
    model, data = wb.demo.load(name, pretrained=False)
    x, y = data.train.dataset.tensors
    train = [(x[i : i + 64], y[i : i + 64]) for i in (0, 64)]
    val = [(x[128:256], y[128:256])]
    bench = wb.Workbench(model, val, train=train, calib=val[:1], name=name)
    dense = snapshot(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wb.training.synflow_prune(bench, 0.5, rounds=5, progress=False)
        bench.finetune(epochs=1, lr=1e-2, teacher="before", progress=False)
        wb.training.gradual(bench, ratio=0.7, steps=2, epochs=1, progress=False)
        wb.training.iterative(bench, ratio=0.8, rounds=2, finetune_epochs=1, progress=False)
        wb.training.lottery(bench, ratio=0.85, rounds=1, rewind_epoch=0, epochs=1, progress=False)
        wb.training.learned_masks(bench, ratio=0.9, epochs=1, finetune_epochs=0, progress=False)
        q = wb.quantize(bench)
    assert [e.kind for e in bench.history] == [
        "prune",
        "synflow",
        "finetune",
        "gradual",
        "iterative",
        "lottery",
        "learned",
    ]
    assert wb.evaluate(q, val)["n"] == 128
    for mname, mask in bench.masks.items():
        assert (model.get_parameter(mname)[mask] == 0).all(), mname
    assert_plain(model)
    bench.reset()
    assert_bitwise(model, dense)
