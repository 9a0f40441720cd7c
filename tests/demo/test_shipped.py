"""demo/shipped.py: the weights shipped with the package match their manifest (sha256, version, accuracy), are
package data, load for seed 0 without training or writing, and altered or mismatched files are clear errors."""

from __future__ import annotations

import hashlib
import json
import shutil
from fnmatch import fnmatch
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import workbench as wb
from workbench import demo
from workbench.demo import ship as demo_ship
from workbench.demo import shipped

from .conftest import MIN_ACC, NAMES, _assert_same_state

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_weights_match_their_manifest():
    doc = json.loads((shipped.WEIGHTS_DIR / "manifest.json").read_text())
    entries = doc["models"]
    assert sorted(entries) == sorted(NAMES + demo.language_models())
    files = {e["file"] for e in entries.values()}
    files |= {e[k]["file"] for e in entries.values() for k in ("tokenizer", "tokens") if k in e}
    assert {p.name for p in shipped.WEIGHTS_DIR.iterdir()} == files | {"manifest.json"}  # nothing unlisted ships
    entries = {k: v for k, v in entries.items() if k in NAMES}  # stdlib-lm: tests/demo/test_lm.py
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
