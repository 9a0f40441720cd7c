"""CSR convolutions: SparseConv2d computes what Conv2d computes (strides, padding, dilation, bias), the `csr`
backend converts conv layers, and a model with them exports and loads back."""

import pytest
import torch
from conftest import assert_bitwise, snapshot

import workbench as wb
from workbench.sparse.modules import SparseConv2d


@pytest.mark.parametrize(
    "kw",
    [
        {"kernel_size": 3, "padding": 1},
        {"kernel_size": 3, "padding": 0, "stride": 2, "bias": False},
        {"kernel_size": (3, 1), "padding": (1, 0), "dilation": (2, 1)},
        {"kernel_size": 1},
    ],
)
def test_sparse_conv_equals_conv(kw):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(6, 10, **kw).eval()
    with torch.no_grad():
        conv.weight[conv.weight.abs() < 0.15] = 0
    sp = SparseConv2d.from_conv(conv)
    x = torch.randn(3, 6, 11, 9)
    with torch.no_grad():
        assert torch.allclose(sp(x), conv(x), atol=1e-5)
        assert torch.allclose(sp.to_dense()(x), conv(x), atol=1e-6)
    assert sp.nnz == int((conv.weight != 0).sum())


def test_grouped_and_same_padded_convs_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="groups=1"):
        SparseConv2d.from_conv(torch.nn.Conv2d(4, 4, 3, groups=2))
    with pytest.raises(ValueError, match="explicit padding"):
        SparseConv2d.from_conv(torch.nn.Conv2d(4, 4, 3, padding="same"))


def test_csr_backend_converts_convs_and_the_result_exports_and_loads(tmp_path):
    model, data = wb.demo.load("digits-cnn")
    bench = wb.Workbench(model, data)
    bench.apply(wb.Plan.global_(0.9))
    before = snapshot(model)
    fast, rep = wb.sparse.compile(bench, backend="csr")
    convs = [n for n, m in fast.named_modules() if isinstance(m, SparseConv2d)]
    assert convs == ["features.0", "features.3", "features.7"]
    assert {r.name: r.chosen for r in rep.layers}["features.3"] == "csr"
    x = data.example if isinstance(data.example, torch.Tensor) else data.example[0]
    model.eval()
    with torch.no_grad():
        assert torch.allclose(fast(x), model(x), atol=1e-5)
    assert_bitwise(model, before)
    wb.sparse.export(fast, tmp_path, formats=("safetensors",))
    back = wb.sparse.load(tmp_path, wb.demo.build("digits-cnn"))  # check=True reproduces the saved outputs
    assert isinstance(back.features[3], SparseConv2d)
    with torch.no_grad():
        assert torch.allclose(back(x), fast(x), atol=1e-5)
