"""Key results of notebooks/03_impact.ipynb: what pruning changes besides accuracy, on the CNN and a transformer.

Margins are stated on the weights shipped with the package (seed 0) and this notebook's 2-epoch fine-tunes; how
close fine-tuning comes to dense is measured by benchmarks/trained_claims.py, not asserted here."""

from __future__ import annotations

import numpy as np
import pytest
from test_notebooks import image_count, stream_text, widget_outputs


def check(nb, s: dict) -> None:
    text = stream_text(nb)
    assert s["dense_accuracy"] >= 0.95  # shipped weights: 0.997

    # accuracy and generalization
    val = [p["val"] for p in s["sweep"]]
    sparsity = [p["sparsity"] for p in s["sweep"]]
    assert sparsity == sorted(sparsity)
    # not monotone point by point (global magnitude at 60% can beat 50%), but the ends are ordered; shipped
    # weights: 0.992 at 29% (the highest), 0.100 at 87% (the lowest; 0.117 at 77%)
    assert val[0] >= max(val) - 0.01 and val[-1] == min(val), val
    assert val[-1] < 0.5 < val[0]  # the sweep reaches the cliff
    assert s["finetuned_accuracy"] > s["oneshot_accuracy"]  # fine-tuning recovers; this run: 0.994 vs 0.867
    assert "fine-tuning recovers" in text
    assert all(np.isfinite(v) for v in s["gaps"].values())

    # bias: per-class numbers add up, the flips are accounted for
    b = s["bias_oneshot"]
    counts = np.array(b["counts"])
    for key in ("before", "after"):
        per_class = np.array(b[f"per_class_{key}"])
        assert (per_class * counts).sum() / counts.sum() == pytest.approx(b[f"accuracy_{key}"], abs=1e-9)
    assert min(b["per_class_after"]) < b["accuracy_after"]  # some class pays more; shipped weights: 0.444 vs 0.867
    assert b["n_flipped"] >= b["forgotten"] + b["learned"]
    if b["accuracy_after"] < b["accuracy_before"] - 0.02:  # a real drop: more forgotten than learned
        assert b["forgotten"] > b["learned"]
    assert all(w <= o + 1e-12 for w, o in zip(b["curve_worst"], b["curve_overall"]))
    assert s["per_class_consistent"] is True
    assert "give back the overall accuracy: True" in text

    # robustness: PGD <= FGSM <= clean at eps 0.1, in every state (this run: the closest pair is one-shot's PGD
    # 0.172 vs FGSM 0.273, 13 of 128 digits); eps 0 is the clean input
    for state, (pgd, fgsm, clean) in s["robustness"].items():
        assert pgd <= fgsm <= clean, state
    assert s["pgd_fgsm_clean_ordered"] is True and s["noise_eps0_equals_clean"] is True
    assert s["robustness"]["fine-tuned"][2] > s["robustness"]["one-shot"][2]  # this run: 1.000 vs 0.836 clean
    assert "PGD <= FGSM <= clean in every state: True" in text

    # interpretability and structure
    r1, r2 = s["attribution_spearman"]["oneshot"], s["attribution_spearman"]["finetuned"]
    assert r2 == s["side_by_side"][0]["spearman"]  # the table shows the fine-tuned state's similarity
    closer = "brings the explanations closer to dense" if r2 > r1 else "does not bring the explanations closer"
    assert f"(mean Spearman): one-shot {r1:.2f}, fine-tuned {r2:.2f}" in text and closer in text
    assert s["paths_log10_output"]["pruned"] < s["paths_log10_output"]["dense"]

    # resources: masked = dense size, smaller once compressed or compiled
    dense, unstructured, structured = s["resources"]
    assert unstructured["raw_kib"] == pytest.approx(dense["raw_kib"], abs=1.0)
    assert unstructured["zipped_kib"] < 0.75 * dense["zipped_kib"]
    assert unstructured["flops"] < 0.5 * dense["flops"] and unstructured["flops_dense"] == dense["flops"]
    assert unstructured["nonzero_params"] < 0.4 * dense["nonzero_params"]
    assert structured["compiled_params"] < 0.5 * dense["stored_params"]
    assert structured["speedup"] > 0 and unstructured["speedup"] > 0
    assert "shrinks the model for real" in text

    # a second architecture, side by side
    side = {r["model"]: r for r in s["side_by_side"]}
    assert set(side) == {"digits-cnn", "digits-transformer"}
    for name, r in side.items():  # this run: fine-tuning gains 0.128 (cnn) and 0.072 (transformer)
        assert r["fine_tuned"] >= r["one_shot"], name
        assert r["pgd_pruned"] <= r["fgsm_pruned"] <= r["clean_pruned"], name  # transformer: 0.211, 0.422, 0.953
    assert s["transformer_dense"] >= 0.9  # shipped weights: 0.964
    assert image_count(nb) >= 7
    widget_out = widget_outputs(nb)
    assert not [o for o in widget_out if o.get("output_type") == "error"], "a widget callback raised"
    assert sum("image/png" in o.get("data", {}) for o in widget_out) >= 1  # the widgets drew when first shown
