"""demo/ship_lm.py: a manifest entry is written keeping the others (atomically), the measured metrics are the
workbench's own, and check_lm names a missing entry, a perplexity that differs, or why it could not check."""

import json
import math
import shutil
from types import SimpleNamespace

import pytest
from torch import nn

from workbench.demo import lm, shipped
from workbench.demo import ship_lm as ship_lm_mod

pytest.importorskip("transformers")


@pytest.fixture
def weights(tmp_path):
    out = tmp_path / "weights"
    shutil.copytree(shipped.WEIGHTS_DIR, out)
    return out


def test_write_entry_keeps_the_other_entries(weights, tmp_path):
    before = json.loads((weights / "manifest.json").read_text())["models"]
    ship_lm_mod.write_entry(weights, "test-lm", {"file": "x.safetensors"})
    after = json.loads((weights / "manifest.json").read_text())["models"]
    assert after == {**before, "test-lm": {"file": "x.safetensors"}} and not list(weights.glob(".*.tmp"))
    empty = tmp_path / "empty"
    empty.mkdir()
    ship_lm_mod.write_entry(empty, "a", {"n": 1})  # no manifest yet: one is made
    assert json.loads((empty / "manifest.json").read_text())["models"] == {"a": {"n": 1}}


def test_check_lm_names_a_perplexity_that_differs_a_missing_entry_and_a_file_that_fails(weights, monkeypatch):
    """The comparison logic, with loading and measuring stubbed (the real check of the shipped files runs in
    tests/demo/test_shipped.py through ship.check())."""
    doc = json.loads((weights / "manifest.json").read_text())
    ppl = doc["models"][lm.NAME]["val_perplexity"]
    measured = {"perplexity": ppl}
    monkeypatch.setattr(ship_lm_mod, "load_shipped", lambda model, *a: model)
    monkeypatch.setattr(lm, "build_lm", lambda: nn.Linear(1, 1))
    monkeypatch.setattr(lm, "make_lm_data", lambda weights_dir: SimpleNamespace(val=[]))
    monkeypatch.setattr(ship_lm_mod, "measure", lambda model, val: measured)
    assert ship_lm_mod.check_lm(weights) == []
    measured["perplexity"] = ppl * (1 + 1e-7)  # within the relative 1e-6
    assert ship_lm_mod.check_lm(weights) == []
    measured["perplexity"] = ppl * 1.01
    (problem,) = ship_lm_mod.check_lm(weights)
    assert problem == f"{lm.NAME}: val perplexity {ppl * 1.01!r} on this machine, the manifest says {ppl!r}"

    def broken(model, *a):
        raise ValueError("weights altered")

    monkeypatch.setattr(ship_lm_mod, "load_shipped", broken)
    assert ship_lm_mod.check_lm(weights) == [f"{lm.NAME}: weights altered"]
    del doc["models"][lm.NAME]
    (weights / "manifest.json").write_text(json.dumps(doc))
    assert ship_lm_mod.check_lm(weights) == [f"{lm.NAME}: no entry in {weights / 'manifest.json'}"]
    monkeypatch.setattr(lm, "available", lambda: (False, "transformers is missing"))
    assert ship_lm_mod.check_lm(weights) == [f"{lm.NAME}: not checked (transformers is missing)"]


def test_measure_gives_the_workbench_causal_lm_metrics():
    import torch
    import transformers as T

    torch.manual_seed(0)
    cfg = T.LlamaConfig(vocab_size=32, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    model = T.LlamaForCausalLM(cfg).eval()
    ids = torch.randint(0, 32, (2, 9))
    m = ship_lm_mod.measure(model, [{"input_ids": ids}])
    assert set(m) == {"perplexity", "loss", "accuracy", "tokens"} and m["tokens"] == 2 * 8  # next-token targets
    assert m["perplexity"] == pytest.approx(math.exp(m["loss"])) and 0 <= m["accuracy"] <= 1
