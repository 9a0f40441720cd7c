"""Tests for the ``stdlib-lm`` demo (``workbench/demo/lm.py``; the files ``ship_lm.py`` writes): the shipped
tokenizer / token ids / weights against their manifest, the data's Hugging Face form, and the validation perplexity
of the shipped weights measured by the workbench's own metric against the manifest. The corpus and its split by file:
tests/demo/test_corpus.py.

Nothing here trains except ``test_retraining_runs_deterministically`` (marked ``trains_demo``, a short recipe)."""

from __future__ import annotations

import functools
import json
import math
import shutil

import pytest
import torch
from conftest import assert_bitwise, assert_plain, snapshot

import workbench as wb
from workbench import demo
from workbench.demo import corpus, lm, shipped

pytest.importorskip("transformers")

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def shipped_lm():
    return demo.load("stdlib-lm")


@pytest.fixture(scope="module")
def entry():
    return shipped.manifest()["models"]["stdlib-lm"]


# --------------------------------------------------------------------------- shipped files and data


def test_shipped_files_match_the_manifest(entry):
    root = shipped.WEIGHTS_DIR
    assert entry["model_version"] == lm.LM_VERSION and entry["dtype"] == "float16"
    assert shipped.sha256(root / entry["file"]) == entry["sha256"]
    assert shipped.sha256(root / entry["tokenizer"]["file"]) == entry["tokenizer"]["sha256"]
    assert shipped.sha256(root / entry["tokens"]["file"]) == entry["tokens"]["sha256"]
    assert (root / entry["file"]).stat().st_size < 15e6  # package data: tests/demo/test_shipped.py checks the patterns


def test_load_gives_a_llama_causal_lm_and_hugging_face_batches(shipped_lm, entry):
    from transformers import LlamaForCausalLM

    model, data = shipped_lm
    assert isinstance(model, LlamaForCausalLM) and isinstance(data, demo.LMData)
    assert demo.language_models() == ["stdlib-lm"] and "stdlib-lm" not in demo.available()
    cfg = model.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads) == (4, 256, 8, 4)
    assert cfg.vocab_size == data.vocab_size == len(data.tokenizer) == entry["tokenizer"]["vocab_size"]
    assert sum(p.numel() for p in model.parameters()) == entry["parameters"]
    assert not model.training and all(p.dtype == torch.float32 for p in model.parameters())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())

    assert (len(data.val), len(data.calib)) == (4, 16)
    for batch in (*data.val, *data.calib):
        assert set(batch) == {"input_ids", "attention_mask", "labels"}
        ids = batch["input_ids"]
        assert ids.shape == (8, lm.SEQ_LEN) and ids.dtype == torch.int64
        assert torch.equal(batch["labels"], ids) and bool((batch["attention_mask"] == 1).all())
        assert 0 <= int(ids.min()) and int(ids.max()) < cfg.vocab_size
    assert torch.equal(data.example, data.val[0]["input_ids"])
    with torch.no_grad():
        logits = model(data.example[:2]).logits
    assert logits.shape == (2, lm.SEQ_LEN, cfg.vocab_size) and torch.isfinite(logits).all()

    text = data.tokenizer.decode(data.val[0]["input_ids"][0])
    assert data.tokenizer(text, add_special_tokens=False)["input_ids"] == data.val[0]["input_ids"][0].tolist()


def test_validation_perplexity_equals_the_manifest(shipped_lm, entry):
    model, data = shipped_lm
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = wb.Workbench(model, data.val).evaluate()
    assert result["task"] == "causal-lm" and result["metric_name"] == "perplexity"
    assert result["tokens"] == entry["val_tokens"] == 32 * (lm.SEQ_LEN - 1)
    assert math.isclose(result["perplexity"], entry["val_perplexity"], rel_tol=1e-3)
    assert entry["val_perplexity"] < entry["unigram_val_perplexity"]  # what the shipped model learned
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_unigram_baseline_is_add_one_smoothed_counts():
    val = lm.load_token_ids()["val"]
    for uniform in (torch.empty(0, dtype=torch.long), torch.arange(lm.VOCAB_SIZE)):  # equal counts: perplexity V
        assert math.isclose(lm.unigram_perplexity(uniform, val), lm.VOCAB_SIZE, rel_tol=1e-9)
    rows = torch.full((2, lm.SEQ_LEN), 7)
    n = 1000  # token 7 seen n times: p = (n + 1) / (n + V) at every predicted position
    ppl = lm.unigram_perplexity(torch.full((n,), 7), rows)
    assert math.isclose(ppl, (n + lm.VOCAB_SIZE) / (n + 1), rel_tol=1e-9)


def test_altered_tokenizer_or_token_ids_are_clear_errors(tmp_path, entry):
    copy = tmp_path / "weights"
    shutil.copytree(shipped.WEIGHTS_DIR, copy)
    tok = copy / entry["tokenizer"]["file"]
    tok.write_text(tok.read_text().replace('"<|endoftext|>"', '"<|end|>"', 1))
    with pytest.raises(wb.DemoWeightsError, match=r"demo tokenizer .* have sha256 .*python -m workbench\.demo\.ship"):
        lm.make_lm_data(weights_dir=copy)
    (copy / entry["tokens"]["file"]).unlink()
    shutil.copy(shipped.WEIGHTS_DIR / entry["tokenizer"]["file"], tok)
    with pytest.raises(wb.DemoWeightsError, match=r"demo token ids .* for 'stdlib-lm' are missing"):
        lm.make_lm_data(weights_dir=copy)
    doc = json.loads((copy / "manifest.json").read_text())
    doc["models"]["stdlib-lm"]["model_version"] = lm.LM_VERSION + 1
    (copy / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(wb.DemoWeightsError, match=r"LM_VERSION 2, the code is at LM_VERSION 1"):
        lm.make_lm_data(weights_dir=copy)


def test_train_windows_are_seeded_and_lazy():
    calls = []

    def source():
        calls.append(1)
        return torch.arange(10_000, dtype=torch.int32)

    a, b, c = (lm.train_loader(3, seed, source) for seed in (0, 0, 1))
    assert len(a) == 3 and not calls  # the length is known before the stream is read
    ba, bb, bc = (next(iter(x)) for x in (a, b, c))
    assert calls and torch.equal(ba["input_ids"], bb["input_ids"]) and not torch.equal(ba["input_ids"], bc["input_ids"])
    ids = ba["input_ids"]
    assert ids.shape == (8, lm.SEQ_LEN) and ids.dtype == torch.int64 and torch.equal(ba["labels"], ids)
    assert torch.equal(ids - ids[:, :1], torch.arange(lm.SEQ_LEN).expand(8, -1))  # contiguous windows
    assert int(ids.max()) < 10_000


@pytest.mark.slow
def test_data_train_reads_this_machines_training_files(shipped_lm):
    _, data = shipped_lm
    assert len(data.train) == lm.TRAIN_BATCHES
    batch = next(iter(data.train))
    assert batch["input_ids"].shape == (8, lm.SEQ_LEN) and int(batch["input_ids"].max()) < lm.VOCAB_SIZE
    stream = lm.train_stream()
    assert stream.dtype == torch.int32 and len(stream) > 100 * lm.SEQ_LEN
    assert int((stream == 0).sum()) == len(corpus.split(corpus.stdlib_files())[0])  # one <|endoftext|> per file


@pytest.mark.slow
@pytest.mark.trains_demo
def test_retraining_runs_deterministically(monkeypatch, shipped_lm):
    """``wb.demo.train("stdlib-lm")`` with the recipe cut to a few steps: deterministic, leaves the RNG and thread
    count as they were, and lowers the validation loss of the initialisation."""
    monkeypatch.setattr(lm, "LMRecipe", functools.partial(lm.LMRecipe, steps=6, warmup=2))
    _, data = shipped_lm
    threads = torch.get_num_threads()
    rng = torch.random.get_rng_state()
    a = demo.train("stdlib-lm", seed=3)
    assert torch.equal(torch.random.get_rng_state(), rng) and torch.get_num_threads() == threads
    b = demo.train("stdlib-lm", seed=3)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert not a.training and all(p.dtype == torch.float32 for p in a.parameters())
    init, _ = demo.load("stdlib-lm", pretrained=False, seed=3)
    assert wb.evaluate(a, data.val)["loss"] < wb.evaluate(init, data.val)["loss"]


@pytest.mark.slow
def test_the_workbench_prunes_the_shipped_lm_and_undoes_bitwise(shipped_lm):
    model, data = shipped_lm
    before = snapshot(model)
    bench = wb.Workbench(model, data.val, calib=data.calib)
    for i in range(model.config.num_hidden_layers):
        assert "head" in bench.targets[f"model.layers.{i}.self_attn.q_proj"].granularities
        assert "neuron" in bench.targets[f"model.layers.{i}.mlp.gate_proj"].granularities
    heads = bench.groups.groups["model.layers.0.self_attn:heads"]
    assert heads.size == model.config.num_key_value_heads  # grouped-query: a KV head with its 2 query heads
    bench.apply(wb.Plan.uniform(0.5, granularity="head"))
    q = model.model.layers[0].self_attn.q_proj.weight.reshape(4, 2 * 32, 256)  # 4 KV groups x 2 heads x head dim
    assert sorted(int((g != 0).any()) for g in q) == [0, 0, 1, 1]
    bench.apply(wb.Plan.uniform(0.3, granularity="neuron"))
    bench.reset()
    assert_bitwise(model, before)
    assert_plain(model)
