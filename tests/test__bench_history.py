"""workbench/_bench_history.py: the history as plain dicts (`history_table`) and as a JSON file (`export_history`),
redo branch and current position included."""

import json

import pytest
from conftest import val_batches as load

import workbench as wb


def test_history_table_and_export(tmp_path):
    model, data, _ = load()
    bench = wb.Workbench(model, data)
    bench.apply(wb.Plan.global_(0.5))
    bench.apply(wb.Plan.uniform(0.3, granularity="filter", criterion="l1"), label="filters")
    bench.undo()
    table = bench.history_table()
    assert [r["index"] for r in table] == [0, 1, 2]
    assert [r["active"] for r in table] == [True, True, False] and [r["current"] for r in table] == [False, True, False]
    assert table[0]["label"] == "dense" and table[0]["accuracy"] == pytest.approx(bench.history[0].metrics["accuracy"])
    assert table[2]["label"] == "filters" and table[2]["plan"]["default"]["granularity"] == "filter"
    assert table[1]["sparsity"] == pytest.approx(0.5, abs=0.01) and table[1]["metric_name"] == "accuracy"
    assert table[1]["layers"]["features.0"]["ratio"] == 0.5
    path = bench.export_history(tmp_path / "history.json")
    doc = json.loads(path.read_text())
    assert doc["position"] == 1 and doc["model"] == bench.name and doc["history"] == table
