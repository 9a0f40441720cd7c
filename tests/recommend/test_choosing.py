"""recommend/choosing.py: the strategies registry and the "which pruning should I use?" guide rendered from results."""

import pytest

import workbench as wb
from workbench.recommend import STRATEGIES, available_strategies, guide_markdown, recommend

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is fastest and steadiest


def test_strategies_registry_and_guide_markdown():
    assert available_strategies() == list(STRATEGIES) and "2:4" in STRATEGIES
    model, data = wb.demo.load("digits-mlp")
    bench = wb.Workbench(model, data)
    rec = recommend(bench, "latency", 0.01, strategies=["global-magnitude", "structured-l1"], repeats=1)
    md = guide_markdown(["digits-mlp"], results={("digits-mlp", "latency", "cpu"): rec}, questions=[("latency", "cpu")])
    assert md.startswith("## Which pruning should I use?")
    assert "| faster inference on a CPU, at most 1.0 points of accuracy lost |" in md
    assert f"| {rec.best.strategy} | {STRATEGIES[rec.best.name].rule} | 1 of 1 models |" in md
    assert f"mlp: {rec.best.strategy} {rec.best.speedup:.2f}x" in md
    assert "wb.recommend" in md and "wb.ui.guide" in md
