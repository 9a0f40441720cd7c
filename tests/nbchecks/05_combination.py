"""Key results of notebooks/05_combination.ipynb: pruning + int8, + distillation, and what 2:4 costs and buys.

Margins: this notebook's run on the weights shipped with the package (seed 0). How close one epoch of fine-tuning
brings 2:4 and unstructured pruning to dense is measured by benchmarks/trained_claims.py, not asserted here."""

from __future__ import annotations

import pytest
from test_notebooks import image_count, stream_text, widget_outputs


def check(nb, s: dict) -> None:
    text = stream_text(nb)

    # pruning + int8: zeros survive, sizes multiply, accuracy holds
    q = s["quantization"]
    assert set(q) == {"digits-mlp", "digits-cnn"}
    for name, r in q.items():
        assert r["zeros_kept"] is True, name
        assert r["both_zipped"] < r["pruned_zipped"] < r["dense_zipped"], name
        assert r["both_zipped"] < r["int8_zipped"] <= r["dense_zipped"], name
        assert r["both_bytes"] < r["dense_bytes"], name  # the quantized model is smaller
        assert abs(r["both_acc"] - r["pruned_acc"]) <= 0.02, name  # int8 costs (almost) nothing; this run: 0.0
        assert r["pruned_acc"] >= 0.9, name  # 70% pruned + 2 epochs of fine-tuning; this run: 0.972 (mlp)
    mlp, cnn = (s["quantization_rows"][n] for n in ("digits-mlp", "digits-cnn"))
    by = lambda rows, v: next(r for r in rows if r["variant"] == v)  # noqa: E731
    assert by(mlp, "int8-dynamic")["bytes"] < 0.4 * by(mlp, "dense")["bytes"]  # all Linear: ~4x
    assert by(cnn, "int8-dynamic")["bytes"] > 0.8 * by(cnn, "dense")["bytes"]  # convs stay float
    assert "dynamic quantization leaves convolutions in float" in text

    # distillation: both fine-tunes recover; the printed verdict follows the numbers
    assert len(s["distillation"]) == 2
    for r in s["distillation"]:  # this run: the smallest gain is the transformer's 0.294 -> 0.800 (labels only)
        assert r["plain"] > r["one_shot"] + 0.3 and r["kd"] > r["one_shot"] + 0.3, r["model"]
        assert 0.0 <= r["plain_agreement"] <= 1.0 and 0.0 <= r["kd_agreement"] <= 1.0
        line = next(ln for ln in text.splitlines() if ln.startswith(f"{r['model']} at "))
        verdict = (
            "distillation helps"
            if r["kd"] > r["plain"]
            else "distillation hurts"
            if r["kd"] < r["plain"]
            else "no difference"
        )
        assert verdict in line, (verdict, line)

    # 2:4: same sparsity as unstructured, and it recovers with fine-tuning (this run: 0.911 -> 0.997)
    nm = s["nm_accuracy"]
    assert nm["2:4"]["sparsity"] == pytest.approx(nm["weight"]["sparsity"], abs=1e-6)
    assert nm["2:4"]["fine_tuned"] >= nm["2:4"]["one_shot"]

    # the cost of the constraint, one-shot and fine-tuned, is printed from the numbers (360 validation digits)
    def cost(gap):
        digits = round(abs(gap) * 360)
        if digits == 0:
            return "costs nothing"
        return (
            f"{'costs' if gap > 0 else 'gains'} {100 * abs(gap):.1f} points ({digits} digit{'s' if digits > 1 else ''})"
        )

    gap1 = nm["weight"]["one_shot"] - nm["2:4"]["one_shot"]
    gap2 = nm["weight"]["fine_tuned"] - nm["2:4"]["fine_tuned"]
    assert f"the 2:4 constraint {cost(gap1)} one-shot and {cost(gap2)} after one epoch of fine-tuning" in text

    # speed: on a CPU, 2:4 buys nothing through CSR; 90% unstructured does better than 2:4
    cpu = s["cpu_speed"]
    assert cpu["90% unstructured"]["csr_speedup"] > cpu["2:4"]["csr_speedup"]
    gpu = s["gpu"]
    if gpu["live"] is None:
        assert "CUDA" in cpu["2:4"]["semi_structured"]  # the backend says why it cannot run here
    if not gpu["recorded"] and gpu["live"] is None:
        assert "No GPU measurement of 2:4 exists yet" in text
    else:
        assert "No GPU measurement" not in text
    assert image_count(nb) >= 2
    widget_out = widget_outputs(nb)
    assert not [o for o in widget_out if o.get("output_type") == "error"], "a widget callback raised"
    assert sum("image/png" in o.get("data", {}) for o in widget_out) >= 1  # the widgets drew when first shown
