import json
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from zoo import ResCat, Tied, make

import workbench as wb
from workbench.sparse import ExportError, SparseLinear


def _shrunk_rescat(backend="shrink"):
    model, data = make("rescat")
    bench = wb.Workbench(model, data)
    bench.apply(wb.Plan.uniform(0.5, granularity="filter", criterion="l1", exclude=["g"]), evaluate=False)
    bench.apply(wb.Plan.global_(0.8), evaluate=False)
    fast, _ = wb.sparse.compile(bench, backend=backend, batch_size=8, repeats=3)
    return model, data, bench, fast


def test_shrunk_model_round_trips_through_safetensors_onnx_and_plan(tmp_path):
    import onnxruntime as ort

    model, data, bench, fast = _shrunk_rescat()
    rep = wb.sparse.export(fast, tmp_path)
    assert set(rep.files) == {
        "model.safetensors",
        "architecture.json",
        "example.safetensors",
        "plan.json",
        "model.onnx",
        "manifest.json",
    }
    assert all((tmp_path / k).stat().st_size == v for k, v in rep.files.items())
    assert rep.onnx_max_abs_err is not None and rep.onnx_max_abs_err <= 1e-5
    assert rep.compressed["model.safetensors"] < rep.files["model.safetensors"]  # zeros of unstructured sparsity
    assert "deflate" in str(rep)
    x = data[0][0]
    # rebuilt from the original architecture, resized; and from the recorded class, which load imports only when
    # told to (it is the test's own, not a workbench or torch.nn class)
    with pytest.raises(ExportError, match=r"trust_code=True"):
        wb.sparse.load(tmp_path)
    for loaded in (
        wb.sparse.load(tmp_path, ResCat()),
        wb.sparse.load(tmp_path, ResCat),
        wb.sparse.load(tmp_path, trust_code=True),
    ):
        assert loaded.stem[0].out_channels == fast.stem[0].out_channels < 8
        with torch.inference_mode():
            torch.testing.assert_close(loaded(x), fast(x), atol=0, rtol=0)
    # the ONNX model has a dynamic batch and matches torch
    sess = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x[:5].numpy()})[0]
    np.testing.assert_allclose(got, model(x[:5]).detach().numpy(), atol=1e-5, rtol=1e-5)
    # the plans re-apply on a fresh copy of the dense model to the same masks
    plans = [wb.Plan.from_dict(p) for p in json.loads((tmp_path / "plan.json").read_text())["plans"]]
    assert [p.to_dict() for p in plans] == [e.plan for e in bench.history[1:]]
    fresh, data2 = make("rescat")
    b2 = wb.Workbench(fresh, data2)
    for p in plans:
        b2.apply(p, evaluate=False)
    assert {k: torch.equal(v, b2.masks[k]) for k, v in bench.masks.items()} == dict.fromkeys(bench.masks, True)


def test_csr_layers_are_saved_as_index_arrays_and_rebuilt(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 4)).eval()
    bench = wb.Workbench(model, [(torch.randn(16, 32), torch.randint(0, 4, (16,)))])
    bench.apply(wb.Plan.uniform(0.9), evaluate=False)
    fast, _ = wb.sparse.compile(bench, backend="csr", batch_size=8, repeats=3)
    assert isinstance(fast[0], SparseLinear)
    rep = wb.sparse.export(fast, tmp_path, formats=("safetensors", "plan"))
    arch = json.loads((tmp_path / "architecture.json").read_text())
    assert arch["modules"]["0"]["type"] == "SparseLinear"
    loaded = wb.sparse.load(tmp_path, nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 4)))
    assert isinstance(loaded[0], SparseLinear) and loaded[0].nnz == fast[0].nnz
    x = torch.randn(3, 32)
    torch.testing.assert_close(loaded(x), model(x), atol=1e-5, rtol=1e-5)
    assert rep.files["model.safetensors"] < 0.5 * (32 * 64 + 64 * 4) * 4  # only non-zeros (and indices) stored


def test_tied_weights_are_saved_once(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, data = make("tied")
    wb.sparse.export(model, tmp_path, formats=("safetensors",), example_inputs=data[0][0][:4])
    loaded = wb.sparse.load(tmp_path, Tied())
    x = data[0][0][:4]
    torch.testing.assert_close(loaded(x), model(x))


def test_bad_exports_are_clear_errors(tmp_path):
    model = nn.Sequential(nn.Linear(4, 4))
    with pytest.raises(ExportError, match="unknown export format"):
        wb.sparse.export(model, tmp_path, formats=("pickle",))
    with pytest.raises(ExportError, match="no plan to write"):
        wb.sparse.export(model, tmp_path, formats=("plan",))
    with pytest.raises(ExportError, match="pass example_inputs"):
        wb.sparse.export(model, tmp_path, formats=("onnx",))
    with pytest.raises(ExportError, match=r"nothing does not exist"):
        wb.sparse.load(tmp_path / "nothing")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("not an export")
    with pytest.raises(ExportError, match=r"no architecture\.json"):
        wb.sparse.load(tmp_path / "other")
    wb.sparse.export(model, tmp_path, formats=("safetensors",))
    with pytest.raises(ExportError, match="is a Conv2d here but a Linear"):
        wb.sparse.load(tmp_path, nn.Sequential(nn.Conv2d(4, 4, 1)))


@torch.library.custom_op("wbtest::twice", mutates_args=())
def _twice(x: torch.Tensor) -> torch.Tensor:
    return x * 2


@_twice.register_fake
def _(x):
    return torch.empty_like(x)


class _Custom(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        return _twice(self.lin(x))


def test_onnx_export_names_unsupported_custom_ops(tmp_path):
    with pytest.raises(ExportError, match=r"custom operators with no ONNX translation: wbtest::twice"):
        wb.sparse.export(_Custom().eval(), tmp_path, formats=("onnx",), example_inputs=torch.randn(2, 4))
