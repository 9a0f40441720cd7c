"""rules/attention.py: T5 heads span a whole stack; shrinking heads and neurons computes what the masked model
computes. Models are built from configs in memory (random weights, no download)."""

from __future__ import annotations

import pytest
import torch

import workbench as wb
from workbench.groups import analyze_groups

from .models import MODELS, T, V, _ids


def test_t5_heads_go_from_a_whole_stack_and_shrink_runs():
    # T5's first layer computes one position bias per head and every later layer of the stack adds it: head h of a
    # stack is one unit (all its layers and its bias column), so the shrunk layers keep equal head counts
    model = T.T5ForConditionalGeneration(
        T.T5Config(vocab_size=V, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_heads=4, decoder_start_token_id=0)
    ).eval()
    ids = _ids()
    analysis = analyze_groups(model, {"input_ids": ids, "decoder_input_ids": ids})
    assert not analysis.refused
    heads = {g.id: g for g in analysis.groups.values() if g.unit == "head"}
    assert set(heads) == {
        "encoder.block.*.layer.*.SelfAttention:heads",
        "decoder.block.*.layer.*.SelfAttention:heads",
        "decoder.block.*.layer.*.EncDecAttention:heads",
    }
    enc = heads["encoder.block.*.layer.*.SelfAttention:heads"]
    assert enc.supported and enc.size == 4
    assert enc.modules == ("encoder.block.0.layer.0.SelfAttention", "encoder.block.1.layer.0.SelfAttention")
    bias = "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"
    masks = enc.masks(torch.tensor([False, True, False, False]), {n: p.shape for n, p in model.named_parameters()})
    assert masks[bias][:, 1].all() and not masks[bias][:, [0, 2, 3]].any()
    for layer in enc.modules:  # head 1 is rows 8..15 of q/k/v and columns 8..15 of o in every layer
        assert masks[f"{layer}.q.weight"][8:16].all() and masks[f"{layer}.q.weight"].sum() == 8 * 32
        assert masks[f"{layer}.o.weight"][:, 8:16].all() and masks[f"{layer}.o.weight"].sum() == 8 * 32

    bench = wb.Workbench(model, [{"input_ids": ids, "labels": ids}])
    bench.apply(wb.Plan.uniform(0.5, granularity="head"), evaluate=False)
    batch = {"input_ids": ids, "decoder_input_ids": ids}
    small, _ = wb.sparse.compile(bench, backend="shrink")
    with torch.no_grad():
        torch.testing.assert_close(small(**batch).logits, model(**batch).logits, rtol=1e-5, atol=1e-5)
    counts = {m.n_heads for n, m in small.named_modules() if type(m).__name__ == "T5Attention"}
    assert counts == {2}
    assert small.generate(ids[:1, :4], max_new_tokens=3, do_sample=False).shape[1] >= 4


@pytest.mark.parametrize("name", list(MODELS))
def test_shrink_cuts_heads_and_neurons_and_computes_what_the_masked_model_computes(name):
    import copy

    import workbench as wb

    torch.manual_seed(0)
    model = copy.deepcopy(MODELS[name]).eval()
    ids = _ids(4, 9)
    labels = torch.randint(0, 2, (4,)) if "bert" in name else ids
    batches = [{"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}]
    bench = wb.Workbench(model, batches)
    bench.apply(wb.Plan.uniform(0.5, granularity="head"), evaluate=False)
    bench.apply(wb.Plan.uniform(0.5, granularity="neuron"), evaluate=False)
    fast, rep = wb.sparse.compile(bench, backend="shrink")
    assert rep.params_after < 0.8 * rep.params_before
    assert any(k.startswith("rules") for k in rep.removed_channels), rep.removed_channels
    with torch.no_grad():
        torch.testing.assert_close(fast(**batches[0]).logits, model(**batches[0]).logits, rtol=1e-5, atol=1e-5)
        assert torch.isfinite(fast(**batches[0]).loss)  # the model's own call, labels included
    for mod in fast.modules():  # sizes follow the weights, head counts follow the heads kept
        if isinstance(mod, torch.nn.Linear):
            assert (mod.out_features, mod.in_features) == tuple(mod.weight.shape)
        kv = getattr(mod, "num_key_value_heads", None)
        if kv is not None and hasattr(mod, "k_proj"):
            assert mod.k_proj.out_features == kv * mod.head_dim
