"""sparse/modules.py: CSR convolutions: SparseConv2d computes what Conv2d computes (strides, padding, dilation, bias),
the `csr` backend converts conv layers, and a model with them exports and loads back; SparseLinear takes any leading
dims and copies; BSRLinear computes the dense layer on CPU too."""

import copy

import pytest
import torch
from conftest import assert_bitwise, snapshot
from torch import nn

import workbench as wb
from workbench.sparse import SparseLinear
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


def test_sparse_linear_handles_any_leading_dims_and_copies():
    lin = nn.Linear(12, 5)
    with torch.no_grad():
        lin.weight[torch.rand_like(lin.weight) < 0.7] = 0
    sp = SparseLinear.from_linear(lin)
    x = torch.randn(2, 3, 12)
    torch.testing.assert_close(sp(x), lin(x), atol=1e-6, rtol=1e-6)
    sp2 = copy.deepcopy(sp)
    torch.testing.assert_close(sp2(x), lin(x), atol=1e-6, rtol=1e-6)
    assert set(sp.state_dict()) == {"crow_indices", "col_indices", "values", "bias"}
    assert torch.equal(sp.to_dense().weight, lin.weight)


def test_bsr_module_computes_the_dense_layer_on_cpu_too():
    """The BSR backend is CUDA-only (torch's CPU BSR matmul is slow), but the module's maths is checked here."""
    from workbench.sparse import BSRLinear

    torch.manual_seed(0)
    lin = nn.Linear(64, 32)
    with torch.no_grad():
        lin.weight.view(4, 8, 8, 8)[:, :, 1:] = 0  # whole 8x8 blocks are zero
    bsr = BSRLinear.from_linear(lin, (8, 8))
    assert bsr.blocksize == (8, 8) and bsr.values.shape[0] == 4
    x = torch.randn(3, 2, 64)
    torch.testing.assert_close(bsr(x), lin(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(copy.deepcopy(bsr).to_dense().weight, lin.weight)
