"""demo/ship.py (the maintainer's script): `ship` writes each model's weights with its manifest entry (sha256,
version, accuracy), keeps the entries of models it did not retrain and removes files no entry lists; `check` and
``--check`` name every problem. Training is replaced by loading the shipped weights: nothing trains here."""

import json
import shutil

import pytest
import torch

from workbench.demo import ship as ship_mod
from workbench.demo import shipped
from workbench.demo.models import MODEL_VERSION, available, build


@pytest.fixture
def weights(tmp_path):
    """A copy of the shipped weights directory."""
    out = tmp_path / "weights"
    shutil.copytree(shipped.WEIGHTS_DIR, out)
    return out


def test_ship_writes_weights_and_manifest_entries_and_keeps_what_it_did_not_retrain(weights, monkeypatch):
    trained = []

    def stand_in(name, seed=0):  # "training" gives the shipped weights: the same files, hashes and accuracies
        trained.append((name, seed))
        return shipped.load_shipped(build(name), name).eval()

    monkeypatch.setattr(ship_mod, "train", stand_in)
    (weights / "old-model-seed0-v0.safetensors").write_bytes(b"stale")
    before = json.loads((weights / "manifest.json").read_text())["models"]
    lines = []
    doc = ship_mod.ship(weights, log=lines.append)
    assert trained == [(name, 0) for name in available()]
    assert not (weights / "old-model-seed0-v0.safetensors").exists() and any("removed old-model" in s for s in lines)
    on_disk = json.loads((weights / "manifest.json").read_text())
    assert on_disk == json.loads(json.dumps(doc))
    for name in available():
        e = doc["models"][name]
        assert e["file"] == f"{name}-seed0-v{MODEL_VERSION}.safetensors" and e["torch"] == torch.__version__
        assert e["sha256"] == shipped.sha256(weights / e["file"])
        assert e["val_accuracy"] == pytest.approx(before[name]["val_accuracy"], abs=1e-12)  # the same weights
    assert doc["models"]["stdlib-lm"] == before["stdlib-lm"]  # not retrained: its entry is kept as it was
    assert not list(weights.glob(".*.tmp"))


def test_check_names_each_problem_and_the_command_line_says_so(weights, monkeypatch, capsys):
    monkeypatch.setattr(ship_mod, "check_lm", lambda root: [])  # the language model has its own tests
    doc = json.loads((weights / "manifest.json").read_text())
    doc["models"]["digits-mlp"]["val_accuracy"] = 0.5
    del doc["models"]["digits-lstm"]
    (weights / "manifest.json").write_text(json.dumps(doc))
    raw = bytearray((weights / doc["models"]["digits-cnn"]["file"]).read_bytes())
    raw[-1] ^= 1
    (weights / doc["models"]["digits-cnn"]["file"]).write_bytes(bytes(raw))
    assert ship_mod.main(["--check", "--out", str(weights)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "shipped demo weights: 3 problem(s)"
    assert any(s.startswith("digits-mlp: val accuracy") and "the manifest says 0.5" in s for s in out)
    assert any(s.startswith("digits-lstm: no entry in") for s in out)
    assert any(s.startswith("digits-cnn: ") and "sha256" in s for s in out)
