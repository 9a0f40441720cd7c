"""Tests for ``workbench.demo``: offline digits data, the five demo models, the weights shipped with the package
(sha256 and accuracy against their manifest) and the train-and-cache path of the other seeds.

Seed 0 loads the shipped weights; the only test that trains is ``test_retraining_reaches_the_accuracy_threshold``.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import io
import json
import operator
import os
import pickle
import shutil
import warnings
from collections import Counter
from fnmatch import fnmatch
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

import workbench as wb
from workbench import demo
from workbench.demo import ship as demo_ship
from workbench.demo import shipped
from workbench.demo import trainer as demo_train

NAMES = ["digits-mlp", "digits-cnn", "digits-resnet", "digits-lstm", "digits-transformer"]
# Floors for a model trained with the demo recipe (seed 0), on any CPU. Shipped weights: mlp 0.981, cnn 0.997,
# resnet 0.992, lstm 0.981, transformer 0.964 (workbench/demo/weights/manifest.json).
MIN_ACC = {
    "digits-mlp": 0.95,
    "digits-cnn": 0.95,
    "digits-resnet": 0.95,
    "digits-lstm": 0.90,
    "digits-transformer": 0.90,
}
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def trained():
    """The shipped (seed 0) models, loaded once per module: ``trained(name) -> (model, data)``."""
    results: dict[str, tuple[nn.Module, demo.DemoData]] = {}

    def get(name: str) -> tuple[nn.Module, demo.DemoData]:
        if name not in results:
            results[name] = demo.load(name, pretrained=True, seed=0)
        return results[name]

    return get


@pytest.fixture
def no_training(monkeypatch):
    monkeypatch.setattr(demo, "train_model", _no_training)


def _no_training(*args, **kwargs):
    raise AssertionError("load() trained although the weights are shipped or cached")


class _StandInTraining:
    """Replaces ``train_model`` in the cache tests: it puts the shipped seed-0 weights into the model (a trained
    model, without the seconds of training) and records each call, so the tests see what the cache does with it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def __call__(self, model: nn.Module, name: str, seed: int) -> nn.Module:
        self.calls.append((name, seed))
        return shipped.load_shipped(model, name).eval()


def _assert_same_state(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k].dtype == sb[k].dtype, k
        assert torch.equal(sa[k], sb[k]), k


def _states_differ(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return any(sa[k].is_floating_point() and not torch.equal(sa[k], sb[k]) for k in sa)


# --------------------------------------------------------------------------- registry and names


def test_available_lists_the_five_models():
    assert demo.available() == NAMES
    assert demo.available() is not demo.available()  # a copy: callers cannot mutate the registry


def test_unknown_name_suggests_closest():
    with pytest.raises(ValueError) as info:
        demo.load("digits-cnm", pretrained=False)
    msg = str(info.value)
    assert "'digits-cnn'" in msg.split("Available")[0]
    assert all(name in msg for name in NAMES)
    with pytest.raises(ValueError, match="Available"):
        demo.load("resnet50", pretrained=False)


# --------------------------------------------------------------------------- data


def test_data_shapes_ranges_and_split():
    _, data = demo.load("digits-mlp", pretrained=False)
    assert isinstance(data, demo.DemoData)
    assert data.name == "digits-mlp"
    assert data.classes == tuple(str(i) for i in range(10))
    assert data.input_shape == (1, 8, 8)
    assert data.x_range == (0.0, 1.0)
    assert data.example.shape == (8, 1, 8, 8) and data.example.dtype == torch.float32

    n_train, n_val = len(data.train.dataset), len(data.val.dataset)
    assert (n_train, n_val) == (1437, 360)
    assert data.train.batch_size == 64 and data.val.batch_size == 128 and data.calib.batch_size == 64
    assert data.train.num_workers == data.val.num_workers == data.calib.num_workers == 0

    for loader in (data.train, data.val, data.calib):
        for x, y in loader:
            assert x.dtype == torch.float32 and x.shape[1:] == (1, 8, 8)
            assert y.dtype == torch.int64 and y.shape == (x.shape[0],)
            assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
            assert int(y.min()) >= 0 and int(y.max()) <= 9
    assert float(next(iter(data.val))[0].max()) == 1.0  # scaled by 1/16, not e.g. standardised

    val_x, _ = next(iter(data.val))
    assert torch.equal(data.example, val_x[:8])
    # Stratified: every class has ~20 % of its samples in the validation split.
    counts = Counter(torch.cat([y for _, y in data.val]).tolist())
    assert set(counts) == set(range(10)) and all(34 <= c <= 38 for c in counts.values())

    with pytest.raises(dataclasses.FrozenInstanceError):
        data.name = "x"  # type: ignore[misc]


def test_split_is_independent_of_seed():
    _, d0 = demo.load("digits-cnn", pretrained=False, seed=0)
    _, d1 = demo.load("digits-lstm", pretrained=False, seed=7)
    for a, b in zip(d0.val, d1.val, strict=True):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert torch.equal(d0.train.dataset.tensors[0], d1.train.dataset.tensors[0])


def test_calib_is_fixed_256_samples():
    _, d0 = demo.load("digits-mlp", pretrained=False, seed=0)
    _, d1 = demo.load("digits-resnet", pretrained=False, seed=3)
    assert len(d0.calib.dataset) == 256 and len(d0.calib) == 4
    b0, b1 = list(d0.calib), list(d1.calib)
    again = list(d0.calib)
    for (x0, y0), (x1, y1), (x2, y2) in zip(b0, b1, again, strict=True):
        assert torch.equal(x0, x1) and torch.equal(y0, y1)
        assert torch.equal(x0, x2) and torch.equal(y0, y2)
    assert len(set(torch.cat([y for _, y in b0]).tolist())) == 10  # all classes represented


def test_train_order_reproducible_per_seed():
    def first_epoch(seed: int) -> torch.Tensor:
        _, data = demo.load("digits-mlp", pretrained=False, seed=seed)
        return torch.cat([y for _, y in data.train])

    a, b, c = first_epoch(0), first_epoch(0), first_epoch(1)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.numel() == 1437


def test_data_cannot_be_corrupted_by_callers():
    _, d0 = demo.load("digits-mlp", pretrained=False)
    d0.val.dataset.tensors[0].zero_()
    d0.example.zero_()
    _, d1 = demo.load("digits-mlp", pretrained=False)
    assert float(d1.val.dataset.tensors[0].max()) == 1.0 and float(d1.example.max()) > 0


# --------------------------------------------------------------------------- shipped weights


def test_shipped_weights_match_their_manifest():
    doc = json.loads((shipped.WEIGHTS_DIR / "manifest.json").read_text())
    entries = doc["models"]
    assert sorted(entries) == sorted(NAMES + demo.language_models())
    files = {e["file"] for e in entries.values()}
    files |= {e[k]["file"] for e in entries.values() for k in ("tokenizer", "tokens") if k in e}
    assert {p.name for p in shipped.WEIGHTS_DIR.iterdir()} == files | {"manifest.json"}  # nothing unlisted ships
    entries = {k: v for k, v in entries.items() if k in NAMES}  # stdlib-lm: tests/demo/test_stdlib_lm.py
    _, data = demo.load("digits-mlp", pretrained=False)
    for name, e in entries.items():
        path = shipped.WEIGHTS_DIR / e["file"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == e["sha256"], name
        assert (e["name"], e["seed"], e["model_version"]) == (name, 0, demo.MODEL_VERSION)
        assert e["file"] == f"{name}-seed0-v{demo.MODEL_VERSION}.safetensors"
        assert isinstance(e["torch"], str) and e["torch"][0].isdigit()
        with safe_open(str(path), "pt") as f:
            assert f.metadata() == {"name": name, "seed": "0", "version": str(demo.MODEL_VERSION), "torch": e["torch"]}
        model = demo.build(name)
        model.load_state_dict(load_file(str(path)), strict=True)
        acc = demo.evaluate(model.eval(), data.val)  # fixed weights on fixed data: the same on every machine
        assert acc == pytest.approx(e["val_accuracy"], abs=1e-9), name
        assert e["val_samples"] == len(data.val.dataset) == 360
        assert acc >= MIN_ACC[name], f"{name}: shipped val accuracy {acc:.4f} < {MIN_ACC[name]}"
    assert demo_ship.check() == []  # the maintainer's check agrees


def test_shipped_weights_are_package_data():
    """A non-editable install copies only what pyproject's package-data names: every shipped file must match it."""
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["workbench.demo"]
    demo_dir = shipped.WEIGHTS_DIR.parent
    for path in shipped.WEIGHTS_DIR.iterdir():
        rel = path.relative_to(demo_dir).as_posix()
        assert any(fnmatch(rel, p) for p in patterns), f"{rel} is not in pyproject's package-data {patterns}"


@pytest.mark.parametrize("name", NAMES)
def test_seed0_loads_the_shipped_weights_without_training_or_writing(name, no_training, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "env"))
    model, _ = demo.load(name, pretrained=True, seed=0, cache_dir=tmp_path / "explicit")
    again, _ = demo.load(name)
    path, _ = shipped.shipped_file(name)
    state = load_file(str(path))
    assert model.state_dict().keys() == state.keys()
    assert all(torch.equal(model.state_dict()[k], state[k]) for k in state)
    _assert_same_state(model, again)
    assert not any(tmp_path.iterdir())  # no cache directory, no file


def _copy_weights(tmp_path: Path, monkeypatch) -> Path:
    copy_dir = tmp_path / "weights"
    shutil.copytree(shipped.WEIGHTS_DIR, copy_dir)
    monkeypatch.setattr(shipped, "WEIGHTS_DIR", copy_dir)
    return copy_dir


def test_altered_shipped_file_is_a_clear_error(tmp_path, monkeypatch, no_training):
    copy_dir = _copy_weights(tmp_path, monkeypatch)
    path = copy_dir / f"digits-cnn-seed0-v{demo.MODEL_VERSION}.safetensors"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0x01  # one bit of one weight
    path.write_bytes(bytes(raw))
    with pytest.raises(
        wb.DemoWeightsError, match=r"digits-cnn-seed0-v1\.safetensors have sha256 .*python -m workbench\.demo\.ship"
    ):
        demo.load("digits-cnn")
    demo.load("digits-mlp")  # the other files are still good

    path.unlink()
    with pytest.raises(wb.DemoWeightsError, match=r"digits-cnn-seed0-v1\.safetensors for 'digits-cnn' are missing"):
        demo.load("digits-cnn")

    manifest = copy_dir / "manifest.json"
    doc = json.loads(manifest.read_text())
    doc["models"]["digits-mlp"]["model_version"] = demo.MODEL_VERSION + 1
    del doc["models"]["digits-lstm"]
    manifest.write_text(json.dumps(doc))
    with pytest.raises(wb.DemoWeightsError, match=r"MODEL_VERSION 2, the code is at MODEL_VERSION 1"):
        demo.load("digits-mlp")
    with pytest.raises(wb.DemoWeightsError, match=r"lists no shipped weights for 'digits-lstm'"):
        demo.load("digits-lstm")
    manifest.write_text("{not json")
    with pytest.raises(wb.DemoWeightsError, match=r"cannot read the demo weights manifest"):
        demo.load("digits-mlp")
    manifest.unlink()
    with pytest.raises(wb.DemoWeightsError, match=r"manifest .* is missing"):
        demo.load("digits-mlp")
    assert demo.load("digits-mlp", pretrained=False)[0] is not None  # untrained models need no weights


def test_shipped_file_of_another_model_is_a_clear_error(tmp_path, monkeypatch):
    copy_dir = _copy_weights(tmp_path, monkeypatch)
    doc = json.loads((copy_dir / "manifest.json").read_text())
    doc["models"]["digits-mlp"] = dict(doc["models"]["digits-cnn"], name="digits-mlp")
    (copy_dir / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(wb.DemoWeightsError, match=r"(?s)do not fit 'digits-mlp'.*Missing key"):
        demo.load("digits-mlp")


@pytest.mark.slow
@pytest.mark.trains_demo
@pytest.mark.parametrize("name", NAMES)
def test_retraining_reaches_the_accuracy_threshold(name):
    """The recipe still trains: a floor on the retrained model's accuracy, not equality with the shipped weights
    (another CPU or torch gives other weights)."""
    threads = torch.get_num_threads()
    torch.manual_seed(1234)
    rng = torch.random.get_rng_state()
    model = demo.train(name, seed=0)
    assert torch.equal(torch.random.get_rng_state(), rng) and torch.get_num_threads() == threads
    assert not model.training and all(p.dtype == torch.float32 for p in model.parameters())
    _, data = demo.load(name, pretrained=False)
    acc = demo.evaluate(model, data.val)
    assert acc >= MIN_ACC[name], f"{name}: retrained val accuracy {acc:.4f} < {MIN_ACC[name]}"
    assert _states_differ(model, demo.load(name, pretrained=False)[0])


# --------------------------------------------------------------------------- pretrained models


@pytest.mark.parametrize("name", NAMES)
def test_pretrained_accuracy_and_contract(name, trained):
    model, data = trained(name)
    acc = demo.evaluate(model, data.val)
    assert acc >= MIN_ACC[name], f"{name}: val accuracy {acc:.4f} < {MIN_ACC[name]}"

    assert not model.training and not any(m.training for m in model.modules())
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks
    for t in model.state_dict().values():
        assert t.device.type == "cpu"
    assert all(p.dtype == torch.float32 for p in model.parameters())

    with torch.no_grad():
        out = model(data.example)
    assert out.shape == (8, 10) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert model(torch.zeros(1, 1, 8, 8)).shape == (1, 10)


@pytest.mark.parametrize("name", NAMES)
def test_untrained_is_reproducible_per_seed(name, tmp_path, no_training):
    a, _ = demo.load(name, pretrained=False, seed=0, cache_dir=tmp_path)
    b, _ = demo.load(name, pretrained=False, seed=0, cache_dir=tmp_path)
    c, _ = demo.load(name, pretrained=False, seed=1, cache_dir=tmp_path)
    _assert_same_state(a, b)
    assert _states_differ(a, c)
    assert not a.training
    assert not any(tmp_path.iterdir())  # pretrained=False never touches the cache


def test_pretrained_differs_from_untrained(trained):
    model, _ = trained("digits-cnn")
    fresh, data = demo.load("digits-cnn", pretrained=False)
    assert _states_differ(model, fresh)
    assert demo.evaluate(fresh, data.val) < 0.5  # shipped: 0.997 trained; untrained (seed 0) is near chance


@pytest.mark.parametrize("name", NAMES)
def test_copy_pickle_and_state_dict_roundtrip(name, trained):
    model, data = trained(name)
    with torch.no_grad():
        ref = model(data.example)
        dup = copy.deepcopy(model)
        assert torch.equal(dup(data.example), ref)
        unpickled = pickle.loads(pickle.dumps(model))
        assert torch.equal(unpickled(data.example), ref)

        buf = io.BytesIO()
        torch.save(model.state_dict(), buf)
        buf.seek(0)
        fresh, _ = demo.load(name, pretrained=False, seed=123)
        fresh.load_state_dict(torch.load(buf, weights_only=True))
        assert torch.equal(fresh(data.example), ref)


# --------------------------------------------------------------------------- cache of the other seeds


def test_other_seeds_train_once_then_read_the_cache_bitwise(tmp_path, monkeypatch):
    stand_in = _StandInTraining()
    monkeypatch.setattr(demo, "train_model", stand_in)
    threads = torch.get_num_threads()
    model, _ = demo.load("digits-lstm", pretrained=True, seed=1, cache_dir=tmp_path)
    assert stand_in.calls == [("digits-lstm", 1)] and torch.get_num_threads() == threads
    path = demo_train.cache_path("digits-lstm", 1, tmp_path)
    assert path.is_file() and path.suffix == ".safetensors"
    assert "digits-lstm" in path.name and "seed1" in path.name and f"v{demo.MODEL_VERSION}" in path.name
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]  # no leftover temp files
    with safe_open(str(path), "pt") as f:
        assert f.metadata() == {"name": "digits-lstm", "seed": "1", "version": str(demo.MODEL_VERSION)}

    again, _ = demo.load("digits-lstm", pretrained=True, seed=1, cache_dir=tmp_path)
    assert stand_in.calls == [("digits-lstm", 1)]  # read back, not trained again
    _assert_same_state(model, again)
    assert not again.training
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "env"))
    demo.load("digits-lstm", pretrained=True, seed=2)
    assert stand_in.calls[-1] == ("digits-lstm", 2)
    assert demo_train.cache_path("digits-lstm", 2).is_file() and demo_train.cache_root() == tmp_path / "env" / "demo"


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong-model", "empty"])
def test_corrupt_cache_is_retrained(damage, tmp_path, monkeypatch):
    stand_in = _StandInTraining()
    monkeypatch.setattr(demo, "train_model", stand_in)
    good = tmp_path / "good"
    reference, _ = demo.load("digits-mlp", pretrained=True, seed=1, cache_dir=good)
    path = demo_train.cache_path("digits-mlp", 1, tmp_path)
    if damage == "garbage":
        path.write_bytes(b"\x00not a safetensors file" * 10)
    elif damage == "truncated":
        path.write_bytes(demo_train.cache_path("digits-mlp", 1, good).read_bytes()[:1000])
    elif damage == "empty":
        path.write_bytes(b"")
    else:  # a valid safetensors file holding another model's weights
        assert demo_train.save_weights(demo.load("digits-cnn", pretrained=False)[0], path)

    with pytest.warns(RuntimeWarning, match="retraining"):
        model, _ = demo.load("digits-mlp", pretrained=True, seed=1, cache_dir=tmp_path)
    assert stand_in.calls == [("digits-mlp", 1)] * 2
    _assert_same_state(model, reference)
    # ...and the cache file was rewritten (compare contents: the header's metadata order may vary)
    rewritten, original = load_file(str(path)), load_file(str(demo_train.cache_path("digits-mlp", 1, good)))
    assert rewritten.keys() == original.keys() and all(torch.equal(rewritten[k], original[k]) for k in original)
    with safe_open(str(path), "pt") as f:
        assert f.metadata() == {"name": "digits-mlp", "seed": "1", "version": str(demo.MODEL_VERSION)}

    monkeypatch.setattr(demo, "train_model", _no_training)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again, _ = demo.load("digits-mlp", pretrained=True, seed=1, cache_dir=tmp_path)
    _assert_same_state(again, reference)


def test_cache_location(monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "env"))
    assert demo_train.cache_root() == tmp_path / "env" / "demo"
    assert demo_train.cache_root(tmp_path / "explicit") == tmp_path / "explicit"
    monkeypatch.delenv("WORKBENCH_CACHE")
    root = demo_train.cache_root()
    assert root.name == "demo" and "workbench" in str(root)
    a = demo_train.cache_path("digits-mlp", 0, tmp_path)
    assert a != demo_train.cache_path("digits-mlp", 1, tmp_path)
    assert a != demo_train.cache_path("digits-cnn", 0, tmp_path)


# --------------------------------------------------------------------------- side effects


def test_load_leaves_global_state_alone():
    threads = torch.get_num_threads()
    torch.manual_seed(1234)
    rng = torch.random.get_rng_state()
    demo.load("digits-lstm", pretrained=True)
    demo.load("digits-resnet", pretrained=False, seed=5)
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert torch.get_num_threads() == threads


def test_float32_even_with_float64_default():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        model, data = demo.load("digits-transformer", pretrained=False)
    finally:
        torch.set_default_dtype(old)
    assert all(t.dtype == torch.float32 for t in model.state_dict().values() if t.is_floating_point())
    assert model(data.example).dtype == torch.float32


def test_load_under_inference_mode_gives_trainable_model():
    with torch.inference_mode():
        model, data = demo.load("digits-mlp")
    assert not any(p.is_inference() for p in model.parameters())
    model(data.example).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


# --------------------------------------------------------------------------- architectures


def _fx_targets(model: nn.Module) -> list:
    gm = torch.fx.symbolic_trace(model)
    return [n.target for n in gm.graph.nodes if n.op == "call_function"]


def test_mlp_structure():
    model, _ = demo.load("digits-mlp", pretrained=False)
    layers = list(model.children())
    assert isinstance(layers[0], nn.Flatten)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64, 128), (128, 64), (64, 10)]


def test_cnn_structure():
    model, _ = demo.load("digits-cnn", pretrained=False)
    mods = dict(model.named_modules())
    assert isinstance(mods["features.0"], nn.Conv2d) and isinstance(mods["features.3"], nn.Conv2d)
    assert isinstance(mods["features"], nn.Sequential) and isinstance(mods["classifier"], nn.Sequential)
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 3
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 3
    assert not any(getattr(m, "inplace", False) for m in model.modules())


def test_resnet_structure():
    model, data = demo.load("digits-resnet", pretrained=False)
    targets = _fx_targets(model)
    assert torch.cat in targets
    assert targets.count(operator.add) + targets.count(torch.add) >= 2  # two residual additions
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert any(m.groups == m.in_channels > 1 for m in convs)  # depthwise
    assert any(m.kernel_size == (1, 1) and m.groups == 1 and m.in_channels > 1 for m in convs)  # pointwise
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == len(convs)
    # one block has a 1x1 conv + BN projection shortcut, another an identity shortcut
    shortcuts = [m for name, m in model.named_modules() if name.endswith("shortcut")]
    assert any(isinstance(s, nn.Identity) for s in shortcuts)
    assert any(isinstance(s, nn.Sequential) and isinstance(s[0], nn.Conv2d) for s in shortcuts)
    assert not any(getattr(m, "inplace", False) for m in model.modules())
    assert model(data.example).shape == (8, 10)


def test_lstm_structure():
    model, _ = demo.load("digits-lstm", pretrained=False)
    lstms = [m for m in model.modules() if isinstance(m, nn.LSTM)]
    assert len(lstms) == 1
    assert lstms[0].batch_first and lstms[0].input_size == 8 and lstms[0].hidden_size == 64


def test_transformer_structure_and_hooks_fire():
    model, data = demo.load("digits-transformer", pretrained=False)
    attns = [m for m in model.modules() if isinstance(m, nn.MultiheadAttention)]
    assert len(attns) == 2 and all(a.embed_dim == 32 and a.num_heads == 4 and a.batch_first for a in attns)
    assert any(isinstance(m, nn.TransformerEncoder) for m in model.modules())
    assert any(isinstance(p, nn.Parameter) and p.shape == (1, 16, 32) for p in model.parameters())
    # In eval/no_grad the encoder may take a fused fast path; a hook on a submodule must still fire.
    seen = []
    handle = attns[0].register_forward_hook(lambda m, i, o: seen.append(o[0].shape))
    try:
        with torch.no_grad():
            model(data.example)
    finally:
        handle.remove()
    assert seen == [torch.Size([8, 16, 32])]


@pytest.mark.filterwarnings("ignore:The tensor attributes self.lstm._flat_weights:UserWarning")
@pytest.mark.parametrize("name", NAMES)
def test_torch_export(name):
    model, data = demo.load(name, pretrained=False)
    exported = torch.export.export(model, (data.example,))
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(data.example), model(data.example))
