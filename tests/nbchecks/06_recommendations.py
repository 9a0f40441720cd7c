"""Key results of notebooks/06_recommendations.ipynb: the guide's ranking on digits-cnn, goals and devices, the
benchmark habits, monitoring.

Margins are stated on the weights shipped with the package (seed 0). Whether one epoch of fine-tuning brings
structured pruning within the budget is measured by benchmarks/trained_claims.py, not asserted here."""

from __future__ import annotations

import numpy as np
from test_notebooks import image_count, stream_text


def check(nb, s: dict) -> None:
    text = stream_text(nb)
    assert s["dense_accuracy"] >= 0.95  # shipped weights: 0.997
    assert s["recommend_bitwise"] is True and s["goals_bitwise"] is True and s["restored_bitwise"] is True

    # the guide's latency ranking: within budget first, the winner within one point, reasons with their numbers
    lat = s["latency"]
    rows = lat["rows"]
    # met: shipped weights: global magnitude keeps 30% one-shot within the budget (0.56 of 1.0 points)
    assert lat["goal"] == "latency" and lat["measured_on"] == "CPU" and lat["met"] is True
    assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
    within = [r for r in rows if r["meets_budget"]]
    assert rows[: len(within)] == within and all(r["drop"] <= 0.01 + 1e-12 for r in within)
    best = rows[0]
    assert f"{best['speedup']:.2f}x" in best["reason"] and f"{best['metric']:.1%}" in best["reason"]
    fast_s = max((r["speedup"] for r in within if r["family"] == "structured"), default=1.0)
    fast_o = max((r["speedup"] for r in within if r["family"] != "structured"), default=1.0)
    if round(fast_s, 1) > round(fast_o, 1):  # measured faster -> ranked first
        assert best["family"] == "structured"
    if fast_s > 1.05 and fast_o <= 1.05:
        assert "so only structured removal gave measured speed on this CPU" in text
    assert "Within one point of accuracy, the guide recommends" in text
    assert "The live model is bitwise unchanged after all that measuring: True." in text

    # fine-tuning: on digits-cnn one-shot filter pruning breaks the budget at the lowest ratio (shipped weights: 10%
    # costs 25 points), one epoch recovers accuracy (this run: 0.747 -> 0.997)
    assert s["finetune_helps"] is True
    one = next(r for r in rows if r["name"] == "structured-l1" and r["finetune_epochs"] == 0)
    tuned = next(r for r in rows if r["name"] == "structured-l1" and r["finetune_epochs"] == 1)
    assert not one["meets_budget"] and tuned["metric"] > one["metric"]
    within = "within" if tuned["meets_budget"] else "still over"
    assert f"costs {100 * tuned['drop']:.1f} points ({within} the 1-point budget)" in text

    # other goals and the device
    assert s["accuracy_best"]["size_ratio"] >= 2.0 and s["accuracy_best"]["meets_budget"]
    assert s["robust_best"]["robust_accuracy"] is not None and 0 <= s["robust_now"] <= 1
    assert s["size_best"]["size"] <= 1.0
    if s["cuda_measured_on"] is None:  # no GPU here: said plainly, with what the ranking rests on
        assert s["cuda_notes"][0].startswith("CUDA speed cannot be measured here") and "2:4" in s["cuda_notes"][0]
    assert f"{len(set(s['winners'].values()))} different winners for five questions" in text

    # benchmarking: predictions checked against measurements, the applied winner measures what the guide said
    from scipy.stats import spearmanr  # the rho the notebook printed is Spearman's rho of what it compared

    pred, meas = s["taylor_predicted"], s["taylor_measured"]
    assert len(pred) == len(meas) >= 6
    assert abs(spearmanr(pred, meas).statistic - s["taylor_spearman"]) < 1e-9
    verdict = "ranks them well enough to screen" if s["taylor_spearman"] > 0.7 else "does not rank them reliably"
    assert f"Spearman rho {s['taylor_spearman']:.2f}: the one-pass estimate {verdict}" in text
    verdict = "ranks them well enough to screen" if s["taylor_spearman"] > 0.7 else "does not rank them reliably"
    assert verdict in text
    assert s["applied_matches"] is True and abs(s["applied_accuracy"] - best["metric"]) < 1e-9
    assert s["compile_speedup"] > 0 and "compile(backend='auto') measures" in text

    # monitoring: clean batches agree, noise drives agreement below the threshold and fires the alert
    agree = np.array(s["monitor_agreement"])
    assert len(agree) == 8 and agree[:3].mean() > agree[-1]  # shipped weights: 0.993 vs 0.711
    assert s["monitor_alerts"] >= 1 and agree.min() < 0.9  # shipped weights: 0.689 at the lowest
    if s["easing_top"]:  # the feedback names a layer to ease, or says the disagreement is spread
        assert f"Putting back the pruned weights of {s['easing_top'][0]} alone recovers the most agreement" in text
    else:
        assert "No single layer recovers agreement when its weights are put back" in text
    assert image_count(nb) == 2, "the chapter draws two charts: the latency candidates and the monitor"
