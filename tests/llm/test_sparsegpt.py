"""SparseGPT on single layers: lower reconstruction error than magnitude and Wanda, the closed-form OBS update, the
lazy batched updates equal to the eager ones, and its own N:M mode."""

from __future__ import annotations

import pytest
import torch

from workbench.errors import ModelError
from workbench.llm import LayerStats, get_method, parse_pattern, sparsegpt_

pytestmark = pytest.mark.usefixtures("one_thread")


def _layer(seed: int = 0, rows: int = 16, cols: int = 64, n: int = 512):
    """A weight and correlated calibration inputs of very different scales (as in language models)."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(cols, cols, generator=g) / cols**0.5 + torch.eye(cols)
    X = (torch.randn(n, cols, generator=g) @ mix) * torch.logspace(-1, 0.5, cols)
    W = torch.randn(rows, cols, generator=g)
    return W.double(), X.double()


def _stats(X: torch.Tensor) -> LayerStats:
    return LayerStats(X.shape[0], X.square().sum(0), 2 * X.T @ X)


def _prune(method: str, W, X, sparsity: float, pattern=None):
    work = W.clone()
    mask = get_method(method).fn(work, _stats(X), sparsity, parse_pattern(pattern), None, {"damp": 0.01})
    return work if get_method(method).updates else work.masked_fill(mask, 0.0), mask


@pytest.mark.parametrize("pattern", [None, "2:4", "4:8"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sparsegpt_reconstructs_the_layer_output_better_than_magnitude_and_wanda(pattern, seed):
    W, X = _layer(seed)
    err = {}
    for method in ("magnitude", "wanda", "sparsegpt"):
        W2, mask = _prune(method, W, X, 0.5, pattern)
        assert int(mask.sum()) == W.numel() // 2 and torch.equal(W2 == 0, mask)
        err[method] = float(torch.linalg.norm(X @ W.T - X @ W2.T))
    assert err["sparsegpt"] < min(err["wanda"], err["magnitude"]), err


def test_with_zero_dampening_one_pruned_weight_gets_the_closed_form_obs_update():
    W, X = _layer(3, rows=1, cols=6, n=64)
    W[0, 0] = 1e-3  # the weight to prune: the smallest w^2 / [H^-1]_jj by far
    H = 2 * X.T @ X
    work = W.clone()
    mask = sparsegpt_(work, H.clone(), 1 / 6, damp=0.0)
    assert mask.nonzero().tolist() == [[0, 0]]
    Hinv = torch.linalg.inv(H)
    q = 0
    expect = W - W[0, q] / Hinv[q, q] * Hinv[q]  # w' = w - w_q / [H^-1]_qq * H^-1[q, :]
    torch.testing.assert_close(work, expect, rtol=1e-10, atol=1e-12)
    assert work[0, q] == 0
    # and it is the least-squares optimum of the layer output with that weight removed
    best = torch.linalg.lstsq(X[:, 1:], X @ W[0]).solution
    torch.testing.assert_close(work[0, 1:], best, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("pattern", ["2:4", "4:8"])
def test_lazy_block_updates_equal_eager_column_updates(pattern):
    W, X = _layer(4)
    H = 2 * X.T @ X
    a, b = W.clone(), W.clone()
    ma = sparsegpt_(a, H.clone(), 0.5, parse_pattern(pattern), blocksize=8)
    mb = sparsegpt_(b, H.clone(), 0.5, parse_pattern(pattern), blocksize=128)
    assert torch.equal(ma, mb)
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_unstructured_prunes_the_same_share_of_every_row_over_blocks():
    W, X = _layer(5, rows=8, cols=100)
    work = W.clone()
    mask = sparsegpt_(work, 2 * X.T @ X, 0.37, blocksize=32)
    assert bool((mask.sum(1) == int(100 * 0.37)).all())


def test_inputs_that_are_always_zero_do_not_break_the_inverse():
    W, X = _layer(6, cols=16)
    X[:, 3] = 0.0
    work = W.clone()
    mask = sparsegpt_(work, 2 * X.T @ X, 0.5)
    assert bool(mask[:, 3].all()) and torch.isfinite(work).all()


def test_a_singular_hessian_without_dampening_is_an_error_with_the_fix():
    W, X = _layer(7, cols=16, n=4)  # rank 4 < 16
    with pytest.raises(ModelError, match=r"not positive definite.*raise damp"):
        sparsegpt_(W.clone(), 2 * X.T @ X, 0.5, damp=0.0)
