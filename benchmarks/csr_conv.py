"""Is a CSR convolution worth a backend on CPU? im2col (`F.unfold`) + `torch.sparse.mm(W_csr, cols)` vs `F.conv2d`.

The sparse core has a CSR path for Linear layers (`SparseLinear`) and would add one for convolutions only if it
measured faster. This script measures the best CPU formulation we know for an unstructured-sparse 3x3 conv: unfold the
input to columns, multiply by the CSR weight (out x in*9) once for the whole batch, fold back to the output shape,
against dense `F.conv2d` on the same (zeroed) weights; outputs are checked equal first (allclose, rtol 1e-4,
atol 1e-3: up to 4,608 products per output). Shapes:
the digits-cnn's middle convs at batch 64 and two ImageNet-like layers at batch 8. Speed-up = dense time / CSR time,
interleaved in the same run (`workbench.sparse.timing.measure`, median of 7 rounds).

Run: ``.venv/bin/python -m benchmarks.csr_conv`` (about a minute on 2 cores).
"""

from __future__ import annotations

import os
import sys
import warnings

import torch
import torch.nn.functional as F

from workbench.sparse.timing import measure

THREADS = 2
SPARSITIES = (0.5, 0.8, 0.9, 0.95, 0.99)
CASES = {  # name: (batch, c_in, c_out, h, w)
    "digits-cnn features.3 (16->32, 8x8)": (64, 16, 32, 8, 8),
    "digits-cnn features.7 (32->64, 4x4)": (64, 32, 64, 4, 4),
    "ResNet stage 3 (256->256, 14x14)": (8, 256, 256, 14, 14),
    "ResNet stage 4 (512->512, 7x7)": (8, 512, 512, 7, 7),
}


def csr_conv(x: torch.Tensor, w_csr: torch.Tensor, c_out: int) -> torch.Tensor:
    n, _, h, w = x.shape
    cols = F.unfold(x, 3, padding=1)  # (n, c_in*9, h*w)
    cols = cols.transpose(0, 1).reshape(cols.shape[1], -1)  # (c_in*9, n*h*w)
    y = torch.sparse.mm(w_csr, cols)  # (c_out, n*h*w)
    return y.view(c_out, n, h * w).transpose(0, 1).reshape(n, c_out, h, w)


def main() -> int:
    torch.set_num_threads(THREADS)
    warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
    torch.manual_seed(0)
    print(
        f"CSR conv (unfold + sparse.mm) vs F.conv2d, 3x3, padding 1; torch {torch.__version__}, {THREADS} threads, "
        f"{os.cpu_count()} CPUs; speed-up = dense / CSR, interleaved medians"
    )
    print(f"{'case':38s} | " + " | ".join(f"{s:>5.0%}" for s in SPARSITIES))
    best = 0.0
    for name, (n, cin, cout, h, w) in CASES.items():
        x = torch.randn(n, cin, h, w)
        cells = []
        for s in SPARSITIES:
            weight = torch.randn(cout, cin, 3, 3)
            k = int(s * weight.numel())
            weight.view(-1)[torch.randperm(weight.numel())[:k]] = 0
            w_csr = weight.reshape(cout, -1).to_sparse_csr()
            with torch.inference_mode():
                ref = F.conv2d(x, weight, padding=1)
                out = csr_conv(x, w_csr, cout)
                assert torch.allclose(out, ref, rtol=1e-4, atol=1e-3), (name, s, float((out - ref).abs().max()))
                t = measure(
                    {
                        "dense": lambda x=x, weight=weight: F.conv2d(x, weight, padding=1),
                        "csr": lambda x=x, w_csr=w_csr, cout=cout: csr_conv(x, w_csr, cout),
                    },
                    repeats=7,
                )
            r = t["dense"] / t["csr"]
            best = max(best, r)
            cells.append(f"{r:4.2f}x")
        print(f"{name:38s} | " + " | ".join(cells))
    verdict = "worth a backend" if best >= 1.2 else "not worth a backend (never >= 1.2x)"
    print(f"best CSR speed-up {best:.2f}x: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
