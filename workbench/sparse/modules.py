"""Inference modules that replace an `nn.Linear` by a sparse format: CSR (CPU and CUDA), BSR and 2:4 (CUDA).

Each holds its weight in a form `state_dict` and `safetensors` can store (plain tensors: the CSR and BSR
index arrays and values; the dense 2:4 weight is kept and compressed when the module is built on its
device) and offers `to_dense()` returning an equivalent `nn.Linear`. They are for inference: no gradients.

>>> import torch
>>> lin = torch.nn.Linear(8, 4)
>>> with torch.no_grad():
...     lin.weight[:, ::2] = 0
>>> sp = SparseLinear.from_linear(lin)
>>> x = torch.randn(3, 5, 8)
>>> torch.allclose(sp(x), lin(x), atol=1e-6), sp.nnz
(True, 16)
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["BSRLinear", "SemiStructuredLinear", "SparseConv2d", "SparseLinear", "densify_"]


def _ptrs(*ts: Tensor) -> tuple:
    """Identity of the tensors a cached sparse weight was built from (rebuilt when they change; a weight built
    in inference mode is not reused outside it)."""
    return tuple((t.data_ptr(), t.device, t.dtype) for t in ts)


class _SparseBase(nn.Module):
    in_features: int
    out_features: int
    bias: nn.Parameter | None

    def _init_compressed(self, crow: Tensor, col: Tensor, values: Tensor, bias: Tensor | None) -> None:
        """Store a CSR/BSR weight as plain buffers (what `state_dict` and safetensors hold) and the bias."""
        self.register_buffer("crow_indices", crow)
        self.register_buffer("col_indices", col)
        self.register_buffer("values", values)
        self._init_bias(bias)
        self._cache: tuple | None = None

    def _compressed(self, make) -> Tensor:
        """The sparse weight `make` (``torch.sparse_csr_tensor`` / ``sparse_bsr_tensor``) builds from the buffers,
        cached until a buffer is replaced or moved."""
        key = (*_ptrs(self.crow_indices, self.col_indices, self.values), torch.is_inference_mode_enabled())
        if self._cache is None or self._cache[0] != key:
            shape = (self.out_features, self.in_features)
            w = make(self.crow_indices, self.col_indices, self.values, shape, check_invariants=False)
            self._cache = (key, w)
        return self._cache[1]

    def _init_bias(self, bias: Tensor | None) -> None:
        if bias is None:
            self.register_parameter("bias", None)
        else:
            self.bias = nn.Parameter(bias.detach().clone(), requires_grad=False)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"

    def _linear(self, x: Tensor, mm) -> Tensor:
        shape = x.shape
        x2 = x.reshape(-1, self.in_features)
        y = mm(x2.t()).t()
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], self.out_features)

    def __getstate__(self) -> dict[str, Any]:  # sparse tensors cannot be deep-copied or pickled: rebuild lazily
        state = self.__dict__.copy()
        state["_cache"] = None
        return state

    def to_dense(self) -> nn.Linear:
        raise NotImplementedError


class SparseLinear(_SparseBase):
    """``y = (W_csr @ x.T).T + b`` with `torch.sparse.mm`: faster than dense on CPU at high sparsity
    (crossover near 80-90% at batch 64 here; `workbench.sparse.compile` measures it per layer)."""

    def __init__(self, crow: Tensor, col: Tensor, values: Tensor, shape: tuple[int, int], bias: Tensor | None = None):
        super().__init__()
        self.out_features, self.in_features = int(shape[0]), int(shape[1])
        self._init_compressed(crow, col, values, bias)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> SparseLinear:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "Sparse CSR tensor support is in beta state"
            w = linear.weight.detach().to_sparse_csr()
        return cls(w.crow_indices(), w.col_indices(), w.values(), tuple(linear.weight.shape), linear.bias)

    @property
    def nnz(self) -> int:
        return int(self.values.numel())

    def weight_csr(self) -> Tensor:
        return self._compressed(torch.sparse_csr_tensor)

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight_csr()
        return self._linear(x, lambda xt: torch.sparse.mm(w, xt))

    def to_dense(self) -> nn.Linear:
        lin = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None)
        lin = lin.to(device=self.values.device, dtype=self.values.dtype)
        with torch.no_grad():
            lin.weight.copy_(self.weight_csr().to_dense())
            if self.bias is not None:
                lin.bias.copy_(self.bias)
        return lin

    def extra_repr(self) -> str:
        return super().extra_repr() + f", nnz={self.nnz}"


class SparseConv2d(_SparseBase):
    """A Conv2d (``groups=1``) as a CSR weight (out x in*kh*kw): unfold the input to columns, one `torch.sparse.mm`
    for the whole batch, reshape to the output. Slower than `F.conv2d` on CPU except at very high sparsity on wide
    layers (measured: 2.0x at 99% on 512->512 7x7, 0.1-0.6x on small layers; `benchmarks/csr_conv.py`), so `compile`
    keeps it only where it measured faster.

    >>> import torch
    >>> conv = torch.nn.Conv2d(4, 6, 3, padding=1, stride=2)
    >>> with torch.no_grad():
    ...     conv.weight[:, :2] = 0
    >>> sp = SparseConv2d.from_conv(conv)
    >>> x = torch.randn(2, 4, 9, 9)
    >>> torch.allclose(sp(x), conv(x), atol=1e-5)
    True
    """

    def __init__(self, crow, col, values, shape: tuple[int, int, int, int], bias, stride, padding, dilation):
        super().__init__()
        self.out_channels, self.in_channels, kh, kw = (int(v) for v in shape)
        self.kernel_size = (kh, kw)
        self.stride, self.padding, self.dilation = tuple(stride), tuple(padding), tuple(dilation)
        self.out_features, self.in_features = self.out_channels, self.in_channels * kh * kw
        self._init_compressed(crow, col, values, bias)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> SparseConv2d:
        if not isinstance(conv, nn.Conv2d) or conv.groups != 1 or conv.padding_mode != "zeros":
            raise ValueError("SparseConv2d converts Conv2d layers with groups=1 and zero padding")
        if isinstance(conv.padding, str):
            raise ValueError(f"padding={conv.padding!r} is not supported; give explicit padding")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            w = conv.weight.detach().reshape(conv.out_channels, -1).to_sparse_csr()
        return cls(
            w.crow_indices(),
            w.col_indices(),
            w.values(),
            tuple(conv.weight.shape),
            conv.bias,
            conv.stride,
            conv.padding,
            conv.dilation,
        )

    nnz = SparseLinear.nnz
    weight_csr = SparseLinear.weight_csr

    def forward(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        kh, kw = self.kernel_size
        oh = (h + 2 * self.padding[0] - self.dilation[0] * (kh - 1) - 1) // self.stride[0] + 1
        ow = (w + 2 * self.padding[1] - self.dilation[1] * (kw - 1) - 1) // self.stride[1] + 1
        cols = F.unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)  # (n, in*kh*kw, L)
        cols = cols.transpose(0, 1).reshape(self.in_features, -1)
        y = torch.sparse.mm(self.weight_csr(), cols).view(self.out_channels, n, oh * ow).transpose(0, 1)
        if self.bias is not None:
            y = y + self.bias.view(1, -1, 1)
        return y.reshape(n, self.out_channels, oh, ow)

    def to_dense(self) -> nn.Conv2d:
        conv = nn.Conv2d(
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            bias=self.bias is not None,
        ).to(device=self.values.device, dtype=self.values.dtype)
        with torch.no_grad():
            conv.weight.copy_(self.weight_csr().to_dense().view_as(conv.weight))
            if self.bias is not None:
                conv.bias.copy_(self.bias)
        return conv

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, nnz={self.nnz}"
        )


class BSRLinear(_SparseBase):
    """Block-sparse (BSR) weight times dense input; CUDA only (torch's CPU BSR matmul is far slower than dense).
    Zero blocks are not stored; `blocksize` is picked by `workbench.sparse.compile` from the weight's zero blocks."""

    def __init__(
        self,
        crow: Tensor,
        col: Tensor,
        values: Tensor,
        shape: tuple[int, int],
        bias: Tensor | None = None,
    ):
        super().__init__()
        self.out_features, self.in_features = int(shape[0]), int(shape[1])
        self._init_compressed(crow, col, values, bias)  # values: (nnz_blocks, R, C)

    @classmethod
    def from_linear(cls, linear: nn.Linear, blocksize: tuple[int, int]) -> BSRLinear:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            w = linear.weight.detach().to_sparse_bsr(blocksize)
        return cls(w.crow_indices(), w.col_indices(), w.values(), tuple(linear.weight.shape), linear.bias)

    @property
    def blocksize(self) -> tuple[int, int]:
        return int(self.values.shape[1]), int(self.values.shape[2])

    def weight_bsr(self) -> Tensor:
        return self._compressed(torch.sparse_bsr_tensor)

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight_bsr()
        return self._linear(x, lambda xt: w @ xt.contiguous())

    def to_dense(self) -> nn.Linear:
        lin = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None)
        lin = lin.to(device=self.values.device, dtype=self.values.dtype)
        with torch.no_grad():
            lin.weight.copy_(self.weight_bsr().to_dense())
            if self.bias is not None:
                lin.bias.copy_(self.bias)
        return lin

    def extra_repr(self) -> str:
        return super().extra_repr() + f", blocksize={self.blocksize}, blocks={self.values.shape[0]}"


class SemiStructuredLinear(_SparseBase):
    """A 2:4 weight on NVIDIA sparse tensor cores via `torch.sparse.to_sparse_semi_structured` (CUDA, fp16/bf16).

    The dense 2:4 weight is the stored state; it is compressed on first use on its device (cuSPARSELt, or
    CUTLASS where cuSPARSELt is missing)."""

    def __init__(self, weight: Tensor, bias: Tensor | None = None):
        super().__init__()
        self.out_features, self.in_features = int(weight.shape[0]), int(weight.shape[1])
        self.register_buffer("weight", weight.detach().clone())
        self._init_bias(bias)
        self._cache: tuple | None = None

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> SemiStructuredLinear:
        return cls(linear.weight, linear.bias)

    def compressed(self) -> Tensor:
        key = (*_ptrs(self.weight), torch.is_inference_mode_enabled())
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, to_semi_structured(self.weight))
        return self._cache[1]

    def forward(self, x: Tensor) -> Tensor:
        w = self.compressed()
        return F.linear(x.contiguous(), w, self.bias)

    def to_dense(self) -> nn.Linear:
        lin = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None)
        lin = lin.to(device=self.weight.device, dtype=self.weight.dtype)
        with torch.no_grad():
            lin.weight.copy_(self.weight)
            if self.bias is not None:
                lin.bias.copy_(self.bias)
        return lin


def to_semi_structured(weight: Tensor) -> Tensor:
    """Compress a 2:4 CUDA weight; falls back to the CUTLASS kernels where cuSPARSELt is not available
    (pytorch/pytorch#115077: "cuSPARSELt not supported on your machine")."""
    from torch.sparse import SparseSemiStructuredTensor, to_sparse_semi_structured

    try:
        return to_sparse_semi_structured(weight)
    except RuntimeError:
        old = SparseSemiStructuredTensor._FORCE_CUTLASS
        SparseSemiStructuredTensor._FORCE_CUTLASS = True
        try:
            return to_sparse_semi_structured(weight)
        finally:
            SparseSemiStructuredTensor._FORCE_CUTLASS = old


def densify_(module: nn.Module) -> nn.Module:
    """Replace, in place, every sparse module of this file inside `module` (a compiled copy) by its
    `to_dense()` Linear; returns `module` (or the dense Linear if `module` itself is sparse)."""
    if isinstance(module, _SparseBase):
        return module.to_dense()
    for name, child in list(module.named_children()):
        if isinstance(child, _SparseBase):
            setattr(module, name, child.to_dense())
        else:
            densify_(child)
    return module
