"""Heads removed for real: SlimMultiheadAttention computes what an nn.MultiheadAttention with those heads masked
computes (every mask form and layout), and compile's shrink uses it on the demo transformer, with export/load."""

import pytest
import torch
from conftest import assert_deployable, snapshot

import workbench as wb
from workbench.sparse.heads import SlimMultiheadAttention, slimmable


def masked_mha(batch_first, drop=(1, 2), e=16, h=4):
    torch.manual_seed(0)
    mha = torch.nn.MultiheadAttention(e, h, batch_first=batch_first).eval()
    d = e // h
    with torch.no_grad():
        for i in drop:
            rows = torch.arange(i * d, (i + 1) * d)
            for j in range(3):
                mha.in_proj_weight[rows + j * e] = 0
                mha.in_proj_bias[rows + j * e] = 0
            mha.out_proj.weight[:, rows] = 0
    keep = [i for i in range(h) if i not in drop]
    return mha, SlimMultiheadAttention.from_mha(mha, keep).eval(), keep


@pytest.mark.parametrize("batch_first", [True, False])
def test_slim_attention_equals_the_masked_one_for_every_mask_form(batch_first):
    mha, slim, keep = masked_mha(batch_first)
    n, lq, ls, e, h = 3, 5, 6, 16, 4
    shape_q, shape_k = ((n, lq, e), (n, ls, e)) if batch_first else ((lq, n, e), (ls, n, e))
    q, k = torch.randn(shape_q), torch.randn(shape_k)
    pad = torch.zeros(n, ls, dtype=torch.bool)
    pad[0, -2:] = True
    causal_bool = torch.ones(lq, ls, dtype=torch.bool).triu(1)
    per_head = torch.randn(n * h, lq, ls)
    cases = [
        {},
        {"key_padding_mask": pad},
        {"attn_mask": causal_bool},
        {"attn_mask": causal_bool.float().masked_fill(causal_bool, float("-inf"))},
        {"attn_mask": per_head, "key_padding_mask": torch.zeros(n, ls).masked_fill(pad, float("-inf"))},
    ]
    with torch.no_grad():
        for kw in cases:
            for need in (False, True):
                a, _ = mha(q, k, k, need_weights=need, **kw)
                b, _ = slim(q, k, k, need_weights=need, **kw)
                assert torch.allclose(a, b, atol=1e-5), (kw.keys(), need)
        _, wa = mha(q, k, k, average_attn_weights=False)
        _, wb_ = slim(q, k, k, average_attn_weights=False)
        assert torch.allclose(wa[:, keep], wb_, atol=1e-5)  # the kept heads attend exactly as before
        x = torch.randn(lq, e)  # unbatched
        assert torch.allclose(mha(x, x, x)[0], slim(x, x, x)[0], atol=1e-5)


def test_what_cannot_be_slimmed_says_why():
    assert "kdim/vdim" in slimmable(torch.nn.MultiheadAttention(8, 2, kdim=4, vdim=4))
    assert "add_bias_kv" in slimmable(torch.nn.MultiheadAttention(8, 2, add_bias_kv=True))
    assert slimmable(torch.nn.MultiheadAttention(8, 2)) == ""


def test_compile_shrinks_pruned_heads_of_the_demo_transformer_and_exports(tmp_path):
    model, data = wb.demo.load("digits-transformer")
    bench = wb.Workbench(model, data)
    bench.apply(wb.Plan.uniform(0.5, granularity="head"))
    before = snapshot(model)
    fast, rep = wb.sparse.compile(bench, backend="shrink")
    assert {k for k in rep.removed_channels if k.startswith("heads ")} == {
        "heads encoder.layers.0.self_attn",
        "heads encoder.layers.1.self_attn",
    }
    assert rep.params_after < rep.params_before and rep.max_abs_err <= 1e-5
    for layer in fast.encoder.layers:
        assert isinstance(layer.self_attn, SlimMultiheadAttention) and layer.self_attn.num_heads == 2
    x = data.example if isinstance(data.example, torch.Tensor) else data.example[0]
    assert_deployable(fast, model, x, before, tmp_path, wb.demo.build("digits-transformer"))
