"""Key results of notebooks/08_language_models.ipynb: layer-wise one-shot pruning of the shipped stdlib-lm.

What holds by construction is asserted (undo bitwise after every method, SparseGPT's weight updates included; 2:4
exact; OWL's block ratios average the asked sparsity; the model restored at the end); the perplexities come from
the shipped weights, so they are the same on every machine up to float rounding, and the sentences the notebook
prints must follow from them (which method is best, whether OWL helps, how much fine-tuning recovers)."""

from __future__ import annotations

import math

from test_notebooks import stream_text


def check(nb, s: dict) -> None:
    text = stream_text(nb)
    assert s["undo_bitwise"] is True and s["nm_exact"] is True and s["restored"] is True
    assert 4_000_000 < s["n_params"] < 6_000_000
    table = s["table"]
    assert set(table) == {f"{m}/{p}" for m in ("magnitude", "wanda", "sparsegpt") for p in ("unstructured", "2:4")}
    assert all(math.isfinite(v) and v > s["dense_perplexity"] > 1 for v in table.values())  # 50% never helps
    best = min(table, key=table.get)
    method, pattern = best.split("/")
    assert f"The best at 50% is {method} {pattern}" in text
    worse = sum(table[f"{m}/2:4"] > table[f"{m}/unstructured"] for m in ("magnitude", "wanda", "sparsegpt"))
    assert f"2:4 is worse than unstructured at the same 50% for {worse} of 3 methods" in text
    ratios = s["owl_ratios"]
    assert abs(sum(ratios) / len(ratios) - 0.7) < 1e-6 and max(ratios) > min(ratios)  # non-uniform, mean kept
    verdict = "OWL is better" if s["owl"] < s["owl_uniform"] else "OWL does not help here"
    assert verdict in text
    assert math.isfinite(s["fine_tuned"]) and ("recovers" in text) == (s["fine_tuned"] < s["one_shot"])
    assert set(s["structured"]) == {"l1", "wanda"}
    assert "header: True" in text
