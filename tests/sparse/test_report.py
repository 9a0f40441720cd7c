"""What compile returns (workbench/sparse/report.py): the result that unpacks like the old pair, the report as plain
data, and the count of stored weights."""

import json

import pytest
import torch
from torch import nn

import workbench as wb
from workbench.sparse import CompileReport, CompileResult, LayerResult, SparseLinear, stored_weights


def _compiled(backend: str = "shrink") -> tuple[nn.Module, CompileResult]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    bench = wb.Workbench(model, [(torch.randn(6, 8), torch.randint(0, 3, (6,)))])
    bench.apply(wb.Plan.uniform(0.5, granularity="neuron"), evaluate=False)
    return model, wb.sparse.compile(bench, backend=backend, batch_size=6, repeats=1)


def test_the_result_unpacks_like_the_old_pair_and_names_its_parts():
    model, result = _compiled()
    fast, rep = result
    assert fast is result.module is result[0] is result[-2]
    assert rep is result.report is result[1] is result[-1]
    assert len(result) == 2 and tuple(result) == (fast, rep) and result[:] == (fast, rep)
    assert isinstance(result, CompileResult) and isinstance(rep, CompileReport)
    with pytest.raises(IndexError):
        result[2]
    with pytest.raises(AttributeError):  # frozen, like every result
        result.module = model
    assert "CompileResult(module=" in repr(result) and "unpacks as (module, report)" in repr(result)
    assert rep.table() in repr(result)


def test_the_report_is_plain_data_and_counts_what_the_module_stores():
    _, (fast, rep) = _compiled()
    d = json.loads(json.dumps(rep.to_dict()))
    assert d["params_before"] == 8 * 16 + 16 + 16 * 3 + 3 and d["params_after"] == stored_weights(fast)
    assert d["params_after"] == 8 * 8 + 8 + 8 * 3 + 3  # half the hidden neurons removed
    assert d["speedup"] == rep.speedup and rep.removed_channels == {"0": 8}
    assert str(rep) == rep.table() and rep.table().startswith("compile backend=shrink")


def test_speedups_are_none_where_nothing_was_measured():
    rep = CompileReport("dense", "cpu", "float32", None, (), 10, 10, {}, None, None, 0.0)
    assert rep.speedup is None and rep.chosen == {}
    layer = LayerResult("fc", (4, 4), 0.5, "csr", tried={"dense": 2.0, "csr": 1.0})
    assert (layer.dense_ms, layer.chosen_ms, layer.speedup) == (2.0, 1.0, 2.0)
    assert LayerResult("fc", (4, 4), 0.5, "dense").speedup is None


def test_stored_weights_counts_the_values_a_sparse_layer_keeps():
    lin = nn.Linear(6, 4)
    with torch.no_grad():
        lin.weight[:, :3] = 0
    sparse = SparseLinear.from_linear(lin)
    assert stored_weights(sparse) == 12 + 4  # the 12 non-zero values and the bias
    assert stored_weights(lin) == 24 + 4
