"""Key results of notebooks/07_transformers.ipynb: a Hugging Face LLaMA-style decoder with grouped-query attention,
attached with a DataLoader of its own dicts, pruned by heads, MLP neurons and hidden size, shrunk and undone.

What holds by construction is asserted (task detection, the structure offered, undo bitwise, shrunk == masked, the
shrunk model smaller and generating); the trained model's perplexities are only checked to be finite and ordered
loosely (the notebook trains it for a few seconds on this machine, so the numbers differ between machines)."""

from __future__ import annotations

import math

from test_notebooks import stream_text


def check(nb, s: dict) -> None:
    text = stream_text(nb)
    assert s["task"] == "causal-lm"
    assert s["offers"] == {"head": 32, "neuron": 16, "hidden": 17}  # 8 blocks: q/k/v/o, gate/up, embeddings + o/down
    assert s["kv_groups"] == 2 and s["hidden"] == 64
    assert s["undo_bitwise"] is True
    assert s["perplexity_after_undo"] == s["dense_perplexity"]
    assert 1 < s["dense_perplexity"] < 256  # better than guessing among 256 bytes after a few seconds of training
    assert all(math.isfinite(v) and v > 1 for v in s["perplexity_after"].values())
    assert s["shrunk_vs_masked"] < 1e-4
    assert s["params_after"] < 0.6 * s["params_before"]  # half the KV groups, a quarter of neurons and hidden
    assert s["generated"] == 4 + 24
    assert "preview" in text and "applied" in text
    for line in text.splitlines():  # the preview counted exactly what Apply removed
        if line.startswith(("head ", "neuron ", "hidden ")) and "preview" in line:
            a, b = line.split("preview")[1].split("weights, applied")
            assert int(a.replace(",", "")) == int(b.split(";")[0].replace(",", "")), line
